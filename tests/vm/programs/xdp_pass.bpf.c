// SPDX-License-Identifier: GPL-2.0
/* A pass-through XDP program named PROG_NAME (a -D define), so that two builds
 * give two distinct programs to chain in libxdp's multi-prog dispatcher
 * (xdp-loader). Used by tests/vm. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef PROG_NAME
#define PROG_NAME xdp_pass
#endif

SEC("xdp")
int PROG_NAME(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
