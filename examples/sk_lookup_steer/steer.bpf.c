// SPDX-License-Identifier: GPL-2.0
/* examples/sk_lookup_steer: TCP connections to a local port in
 * [port_lo, port_hi] are handed to the socket in target[0] (a SOCKMAP the
 * application fills with its listening socket's fd); everything else takes
 * the normal lookup. steered[0] counts the connections handed over. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

const volatile __u16 port_lo = 0;
const volatile __u16 port_hi = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} steered SEC(".maps");

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	__u32 zero = 0;
	struct bpf_sock *sk;
	__u64 *count;
	long err;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	if (ctx->local_port < port_lo || ctx->local_port > port_hi)
		return SK_PASS;
	sk = bpf_map_lookup_elem(&target, &zero);
	if (!sk)
		return SK_PASS;
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (!err) {
		count = bpf_map_lookup_elem(&steered, &zero);
		if (count)
			__sync_fetch_and_add(count, 1);
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
