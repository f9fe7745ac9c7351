// SPDX-License-Identifier: GPL-2.0
/* The demo's second application: program `pass` returns XDP_PASS, which
 * stops a dispatcher chain whose proceedOn is [Drop]. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
