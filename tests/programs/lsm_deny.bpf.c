// SPDX-License-Identifier: GPL-2.0
/* An LSM program that denies signals (kill(2), even signal 0) sent by one
 * process, target_pid, and counts the denials in `denials`. Used by
 * tests/vm/test_vm_lsm.py (and, refused by lockdown, tests/kernel). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define EPERM 1

const volatile __u32 target_pid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} denials SEC(".maps");

/* bpf_lsm_task_kill(struct task_struct *p, struct kernel_siginfo *info,
 *                   int sig, const struct cred *cred): ctx[0..3] are the
 * arguments, ctx[4] the verdict of the programs before this one. */
SEC("lsm/task_kill")
int deny_kill(unsigned long long *ctx)
{
	int previous = (int)ctx[4];
	__u32 zero = 0;
	__u64 *value;

	if (previous)
		return previous;
	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	value = bpf_map_lookup_elem(&denials, &zero);
	if (value)
		__sync_fetch_and_add(value, 1);
	return -EPERM;
}

char LICENSE[] SEC("license") = "GPL";
