// SPDX-License-Identifier: GPL-2.0
// raw_tracepoint/sys_enter: count getpid() calls (syscall 39 on x86_64) made
// by target_pid. Used by the third-party raw_tracepoint plugin test.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_pid = 0;

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} raw_counts SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int count_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
    __u32 key = 0;
    __u64 *value;

    if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
        return 0;
    if (ctx->args[1] != 39 /* __NR_getpid */)
        return 0;
    value = bpf_map_lookup_elem(&raw_counts, &key);
    if (value)
        __sync_fetch_and_add(value, 1);
    return 0;
}

char _license[] SEC("license") = "GPL";
