// SPDX-License-Identifier: GPL-2.0
/* User-space probe counters (tests/kernel/test_probes.py). Each program has
 * its own ARRAY map: slot 0 counts hits, slot 1 sums the probed function's
 * first argument (entry programs) or its return value (return programs), so
 * a test can tell an entry probe from a return probe by the numbers alone. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define COUNTS(name)                          \
	struct {                                  \
		__uint(type, BPF_MAP_TYPE_ARRAY);     \
		__uint(max_entries, 2);               \
		__type(key, __u32);                   \
		__type(value, __u64);                 \
	} name SEC(".maps")

COUNTS(entry_counts);
COUNTS(return_counts);

static __always_inline void record(void *map, __u64 value)
{
	__u32 hits = 0, sum = 1;
	__u64 *slot;

	slot = bpf_map_lookup_elem(map, &hits);
	if (slot)
		__sync_fetch_and_add(slot, 1);
	slot = bpf_map_lookup_elem(map, &sum);
	if (slot)
		__sync_fetch_and_add(slot, value);
}

SEC("uprobe")
int count_entry(struct pt_regs *ctx)
{
	record(&entry_counts, (__u32)PT_REGS_PARM1(ctx));
	return 0;
}

SEC("uretprobe")
int count_return(struct pt_regs *ctx)
{
	record(&return_counts, (__u32)PT_REGS_RC(ctx));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
