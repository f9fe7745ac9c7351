// SPDX-License-Identifier: GPL-2.0
/* A program the verifier must reject: it dereferences a hash map lookup
 * result without the NULL check ("invalid mem access 'map_value_or_null'").
 * A hash map, because since 6.x the verifier proves constant-key lookups in
 * an ARRAY map non-NULL and would accept this. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} scratch SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int missing_null_check(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&scratch, &key);

	*value += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
