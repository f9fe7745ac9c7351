// SPDX-License-Identifier: GPL-2.0
/* A perf_event program that counts its samples: every sample in `samples`
 * (one slot per CPU it ran on), and those taken while target_pid was on the
 * CPU in `target_samples`. Used by tests/kernel/test_perf_event.py. */
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_pid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} target_samples SEC(".maps");

SEC("perf_event")
int count_samples(struct bpf_perf_event_data *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 zero = 0;
	__u64 *value;

	value = bpf_map_lookup_elem(&samples, &cpu);
	if (value)
		__sync_fetch_and_add(value, 1);
	if ((bpf_get_current_pid_tgid() >> 32) == target_pid) {
		value = bpf_map_lookup_elem(&target_samples, &zero);
		if (value)
			__sync_fetch_and_add(value, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
