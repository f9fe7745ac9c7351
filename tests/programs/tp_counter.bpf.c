// SPDX-License-Identifier: GPL-2.0
/* Counts getpid()/getppid() calls made by one process (target_pid) into a
 * one-slot ARRAY map, adding `increment` each time. Used by
 * tests/kernel/test_kernel_layer.py: both programs share `counts`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* .rodata: set by the loader (global data) before load. */
const volatile __u32 target_pid = 0;
const volatile __u64 increment = 1;

/* .data and .bss: present so object inspection sees all three sections. */
__u32 enabled = 1;
__u32 last_tgid;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline int bump(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 key = 0;
	__u64 *value;

	if (!enabled || tgid != target_pid)
		return 0;
	last_tgid = tgid;
	value = bpf_map_lookup_elem(&counts, &key);
	if (value)
		__sync_fetch_and_add(value, increment);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int count_getpid(void *ctx)
{
	return bump();
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int count_getppid(void *ctx)
{
	return bump();
}

char LICENSE[] SEC("license") = "GPL";
