// SPDX-License-Identifier: GPL-2.0
/* Returns a fixed verdict and does nothing else: xdp_pass_only (XDP_PASS),
 * xdp_dropper (XDP_DROP), xdp_aborter (XDP_ABORTED), xdp_tx_only (XDP_TX),
 * and xdp_dispatcher_return (31, what an empty libxdp stub returns);
 * xdp_pkt_changer calls a helper that may change packet data (the verifier
 * of >= 6.13 / 6.12.107 lets such an extension replace only a function that
 * does too: the dispatcher stubs' no-op adjust_tail). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass_only(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_dropper(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int xdp_aborter(struct xdp_md *ctx)
{
	return XDP_ABORTED;
}

SEC("xdp")
int xdp_tx_only(struct xdp_md *ctx)
{
	return XDP_TX;
}

SEC("xdp")
int xdp_dispatcher_return(struct xdp_md *ctx)
{
	return 31;
}

SEC("xdp")
int xdp_pkt_changer(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_tail(ctx, 0))
		return XDP_ABORTED;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
