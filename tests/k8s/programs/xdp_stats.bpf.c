// SPDX-License-Identifier: GPL-2.0
/* The announcement demo's counter, shaped as upstream's go-xdp-counter:
 * program `xdp_stats`, map `xdp_stats_map` (per-CPU, keyed by the XDP
 * action) holding {rx_packets, rx_bytes}; every packet counted under
 * XDP_PASS and passed on. Used by tests/k8s/test_demo.py. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct datarec {
	__u64 rx_packets;
	__u64 rx_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDP_REDIRECT + 1);
	__type(key, __u32);
	__type(value, struct datarec);
} xdp_stats_map SEC(".maps");

SEC("xdp")
int xdp_stats(struct xdp_md *ctx)
{
	__u32 key = XDP_PASS;
	struct datarec *rec = bpf_map_lookup_elem(&xdp_stats_map, &key);

	if (rec) {
		rec->rx_packets++;
		rec->rx_bytes += ctx->data_end - ctx->data;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
