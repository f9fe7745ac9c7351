// SPDX-License-Identifier: GPL-2.0
/* An XDP program whose verdict comes from a global (BTF-visible, not inlined)
 * function: the target an extension (freplace) program replaces, as libxdp's
 * dispatcher slots are. Used by tests/vm. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__attribute__((noinline)) int xdp_verdict(struct xdp_md *ctx)
{
	/* Depends on ctx so that the compiler cannot fold the call away. */
	return ctx->data_end > ctx->data ? XDP_PASS : XDP_ABORTED;
}

SEC("xdp")
int xdp_main(struct xdp_md *ctx)
{
	return xdp_verdict(ctx);
}

char LICENSE[] SEC("license") = "GPL";
