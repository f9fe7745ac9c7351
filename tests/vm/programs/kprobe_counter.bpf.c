// SPDX-License-Identifier: GPL-2.0
/* Counts getppid() calls of one process (target_pid): slot 0 at the syscall's
 * entry (kprobe), slot 1 at its return (kretprobe). Used by tests/vm. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_pid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline int bump(__u32 slot)
{
	__u64 *value;

	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	value = bpf_map_lookup_elem(&counts, &slot);
	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

SEC("kprobe/__x64_sys_getppid")
int count_entry(void *ctx)
{
	return bump(0);
}

SEC("kretprobe/__x64_sys_getppid")
int count_return(void *ctx)
{
	return bump(1);
}

char LICENSE[] SEC("license") = "GPL";
