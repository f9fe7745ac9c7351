// SPDX-License-Identifier: GPL-2.0
/* A target XDP program whose verdict comes from a global (separately
 * verified, not inlined) function, and an extension program that replaces
 * that function (freplace, as libxdp's dispatcher slots are) with a drop that
 * counts its calls. The host kernel refuses EXT loads
 * (tests/kernel/test_kernel_layer.py checks how); tests/vm/test_vm_kernel.py
 * loads both and test-runs the target before, during and after. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 replaced_calls = 0;

__attribute__((noinline)) int decide(struct xdp_md *ctx)
{
	/* Depends on ctx so that the compiler cannot fold the call away. */
	return ctx->data_end > ctx->data ? XDP_PASS : XDP_ABORTED;
}

SEC("xdp")
int with_decision(struct xdp_md *ctx)
{
	return decide(ctx);
}

SEC("freplace/decide")
int replacement(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&replaced_calls, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
