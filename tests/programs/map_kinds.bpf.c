// SPDX-License-Identifier: GPL-2.0
/* Maps of several kinds for the element-access tests (bpfman.kernel.maps);
 * the program only exists so that the object has something to load. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	/* The loader must ignore this: no libbpf auto-pin to /sys/fs/bpf. */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} by_key SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32); /* 4 bytes: padded to 8 per CPU by the kernel */
} per_cpu SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int noop(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
