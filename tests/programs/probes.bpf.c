// SPDX-License-Identifier: GPL-2.0
/* Programs for kernel features the CI host lacks (kprobes, fentry): the host
 * tier checks that their failures are reported as missing features; the VM
 * tier attaches them for real. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 hits;

SEC("kprobe/do_unlinkat")
int on_unlinkat_kprobe(void *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("fentry/do_unlinkat")
int on_unlinkat_fentry(void *ctx)
{
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
