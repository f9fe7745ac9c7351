// SPDX-License-Identifier: GPL-2.0
/* A sampling CPU profiler: on each perf event sample, record the user and
 * kernel stacks of the task on the CPU in `stacks` (BPF_MAP_TYPE_STACK_TRACE)
 * and count (pid, user stack, kernel stack, comm) in `counts`. profiler.py
 * reads both through the daemon's map.dump/map.get. */
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>

#define MAX_STACK_DEPTH 127
#define TASK_COMM_LEN 16

/* 0: profile every process; else only this one (set as global data). */
const volatile __u32 target_pid = 0;

struct key_t {
	__u32 pid;
	__s32 user_stack;	/* id in `stacks`, or a negative errno */
	__s32 kernel_stack;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 4096);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct key_t);
	__type(value, __u64);
} counts SEC(".maps");

SEC("perf_event")
int profile(struct bpf_perf_event_data *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct key_t key = {};
	__u64 one = 1, *value;

	if (pid == 0 || (target_pid && pid != target_pid))
		return 0;	/* idle, or not the process asked for */
	key.pid = pid;
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	key.user_stack = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	key.kernel_stack = bpf_get_stackid(ctx, &stacks, 0);
	value = bpf_map_lookup_elem(&counts, &key);
	if (value)
		__sync_fetch_and_add(value, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
