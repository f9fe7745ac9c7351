// SPDX-License-Identifier: GPL-2.0
/* Counts calls of one kernel function by one process (target_pid), one slot
 * per way of probing it. The kprobe sections name no function and fentry
 * names none either: the loader is told the target (attach params,
 * attach_func); fexit names it in its section. The host kernel has no
 * kprobes and refuses tracing programs: tests/kernel checks how that is
 * reported (test_probes.py, test_kernel_layer.py); tests/vm attaches them
 * for real, through the daemon (test_vm_probes.py) and through the kernel
 * layer (test_vm_kernel.py). tests/vm/probe_support.py mirrors the slots. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_pid = 0;

enum { KPROBE, KRETPROBE, KPROBE_OFFSET, FENTRY, FEXIT, SLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
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

SEC("kprobe")
int on_entry(void *ctx)
{
	return bump(KPROBE);
}

SEC("kretprobe")
int on_return(void *ctx)
{
	return bump(KRETPROBE);
}

SEC("kprobe")
int on_offset(void *ctx)
{
	return bump(KPROBE_OFFSET);
}

SEC("fentry")
int on_fentry(void *ctx)
{
	return bump(FENTRY);
}

SEC("fexit/do_unlinkat")
int on_fexit(void *ctx)
{
	return bump(FEXIT);
}

char LICENSE[] SEC("license") = "GPL";
