// SPDX-License-Identifier: GPL-2.0
/* cgroup programs under test (the `cgroup_*` types):
 *   skb_count  cgroup_skb/egress: counts the packets of its cgroup in
 *              counts[tag], appends its tag to `trace` (run order), and
 *              returns `verdict` (1 allow, 0 drop).
 *   connect4   cgroup/connect4: a TCP/UDP connect to 127.0.0.1:`deny_port`
 *              is refused (EPERM); one to `from_port` goes to `to_port`.
 *   sock_create cgroup/sock_create: creating a socket of family
 *              `deny_family` is refused (EPERM).
 * Instances loaded with map_owner_id share `counts` and `trace`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

const volatile __u32 tag = 0;
const volatile __u32 verdict = 1;
const volatile __u16 deny_port = 0;
const volatile __u16 from_port = 0;
const volatile __u16 to_port = 0;
const volatile __u32 deny_family = 0;

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

SEC("cgroup_skb/egress")
int skb_count(struct __sk_buff *skb)
{
	__u32 key = tag, zero = 0;
	__u64 *count = bpf_map_lookup_elem(&counts, &key);
	__u32 *next = bpf_map_lookup_elem(&trace, &zero);

	if (count)
		__sync_fetch_and_add(count, 1);
	/* Not atomic (clang 14 targets BPF v1): tests send little traffic. */
	if (next && *next < 63) {
		__u32 slot = *next + 1;
		__u32 *cell;

		*next = slot;
		cell = bpf_map_lookup_elem(&trace, &slot);

		if (cell)
			*cell = tag;
	}
	return verdict;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u32 key = tag;
	__u64 *count = bpf_map_lookup_elem(&counts, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	if (deny_port && port == deny_port)
		return 0;
	if (from_port && port == from_port)
		ctx->user_port = bpf_htons(to_port);
	return 1;
}

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	__u32 key = tag;
	__u64 *count = bpf_map_lookup_elem(&counts, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	return !(deny_family && sk->family == deny_family);
}

char LICENSE[] SEC("license") = "GPL";
