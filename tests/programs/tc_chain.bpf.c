// SPDX-License-Identifier: GPL-2.0
/* One link of a TC/TCX chain under test. Every instance is loaded from this
 * object with its own global data:
 *   tag        who this instance is (index into `counts`, value in `trace`)
 *   verdict    what it returns for a matching packet (TCX_NEXT/TC_ACT_UNSPEC
 *              -1, TCX_PASS/TC_ACT_OK 0, DROP/SHOT 2, TC_ACT_PIPE 3, ...)
 *   match_proto the IPv4 protocol it matches (17 UDP, 1 ICMP, 0 every IPv4)
 * Non-matching packets get -1 (no verdict: the chain or the stack goes on).
 * Instances loaded with map_owner_id share `counts` and `trace`, so a test
 * reads how often each one ran and, for the first packets, in which order. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

const volatile __u32 tag = 0;
const volatile __s32 verdict = -1;
const volatile __u8 match_proto = IPPROTO_UDP;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* trace[0] is the next free index; trace[1..63] the tags, in run order. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} trace SEC(".maps");

static __always_inline int matches(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > end)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	return match_proto == 0 || ip->protocol == match_proto;
}

static __always_inline void record(void)
{
	__u32 key = tag, zero = 0, *next, slot;
	__u64 *count = bpf_map_lookup_elem(&counts, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	next = bpf_map_lookup_elem(&trace, &zero);
	if (!next)
		return;
	/* Not atomic (clang 14 targets BPF v1): tests send one packet at a time. */
	slot = *next + 1;
	*next = slot;
	if (slot < 64) {
		__u32 *cell = bpf_map_lookup_elem(&trace, &slot);
		if (cell)
			*cell = tag;
	}
}

SEC("tc")
int tc_chain(struct __sk_buff *skb)
{
	if (!matches(skb))
		return -1;
	record();
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
