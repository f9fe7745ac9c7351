// SPDX-License-Identifier: GPL-2.0
/* XDP programs that read memory that is not theirs, which the kernel allows
 * any program type loaded with CAP_PERFMON (tests/kernel/test_grants.py):
 * one copies 8 bytes from a kernel address, one prints with bpf_printk. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_peek(struct xdp_md *ctx)
{
	__u64 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), (void *)(long)ctx->data);
	return value == 42 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int xdp_print(struct xdp_md *ctx)
{
	bpf_printk("packet of %d bytes", (int)(ctx->data_end - ctx->data));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
