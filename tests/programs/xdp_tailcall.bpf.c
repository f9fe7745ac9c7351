// SPDX-License-Identifier: GPL-2.0
/* An XDP program that makes a tail call: it cannot be spliced into a static
 * dispatcher (the call would leave the whole chain), so the daemon refuses it
 * there with a clear error. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} jump_table SEC(".maps");

SEC("xdp")
int xdp_tailcaller(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jump_table, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
