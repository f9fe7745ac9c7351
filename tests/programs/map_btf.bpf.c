// SPDX-License-Identifier: GPL-2.0
// Maps with BTF-described keys and values, for structured map access tests.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum color { RED = 1, GREEN = 2 };

struct flow_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct flow_stats {
	__u64 packets;
	__s32 delta;
	enum color color;
	__u16 hist[3];
	char label[8];
	struct { __u8 a; __u8 b; } pair;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} per_cpu_total SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int touch(void *ctx)
{
	struct flow_key key = {};
	return bpf_map_lookup_elem(&flows, &key) ? 1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
