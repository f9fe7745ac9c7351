// SPDX-License-Identifier: GPL-2.0
/* An extension (BPF_PROG_TYPE_EXT) program replacing xdp_target.bpf.c's
 * xdp_verdict(): drops everything and counts what it saw. Used by tests/vm. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 replaced_calls = 0;

SEC("freplace/xdp_verdict")
int xdp_drop_all(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&replaced_calls, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
