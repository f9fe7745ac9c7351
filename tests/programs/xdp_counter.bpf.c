// SPDX-License-Identifier: GPL-2.0
/* Counts every packet it sees (packets and bytes, one ARRAY slot) and
 * returns `verdict` (XDP_PASS unless set as global data). The counting goes
 * through a static subprogram so that a spliced copy has a BPF-to-BPF call of
 * its own. Used by tests/kernel/test_xdp.py and tests/vm/test_vm_xdp.py. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 verdict = XDP_PASS;

struct counts {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counts);
} xdp_counts SEC(".maps");

static __attribute__((noinline)) int count(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct counts *c = bpf_map_lookup_elem(&xdp_counts, &key);

	if (!c)
		return 0;
	__sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, ctx->data_end - ctx->data);
	return 1;
}

SEC("xdp")
int xdp_counter(struct xdp_md *ctx)
{
	count(ctx);
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
