// SPDX-License-Identifier: GPL-2.0
/* One program per type the CI host kernel can run, each counting its runs
 * in its own slot of `type_counts`: loaded as one ClusterBpfApplication by
 * tests/k8s/test_program_types.py. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

enum { XDP_SLOT, TC_SLOT, TCX_SLOT, TP_SLOT, UPROBE_SLOT, URETPROBE_SLOT, SLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} type_counts SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&type_counts, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("xdp")
int xdp_types(struct xdp_md *ctx)
{
	bump(XDP_SLOT);
	return XDP_PASS;
}

SEC("tc")
int tc_types(struct __sk_buff *skb)
{
	bump(TC_SLOT);
	return TC_ACT_OK;
}

SEC("tc")
int tcx_types(struct __sk_buff *skb)
{
	bump(TCX_SLOT);
	return TC_ACT_UNSPEC;	/* TCX_NEXT: let the classic tc chain run too */
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_types(void *ctx)
{
	bump(TP_SLOT);
	return 0;
}

SEC("uprobe")
int uprobe_types(void *ctx)
{
	bump(UPROBE_SLOT);
	return 0;
}

SEC("uretprobe")
int uretprobe_types(void *ctx)
{
	bump(URETPROBE_SLOT);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
