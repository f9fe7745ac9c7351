// SPDX-License-Identifier: GPL-2.0
/* netfilter under test: counts every packet at its hook in counts[0] and
 * returns `verdict` (NF_ACCEPT 1, NF_DROP 0). The context is not read, so
 * no vmlinux.h is needed. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 verdict = 1;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("netfilter")
int nf_count(void *ctx)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(&counts, &zero);

	if (count)
		__sync_fetch_and_add(count, 1);
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
