// SPDX-License-Identifier: GPL-2.0
/* A target program with a global (separately verified) function, and an
 * extension program that replaces that function (freplace, as multi-prog
 * dispatchers do). The host kernel refuses EXT loads; tests/vm loads both. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 decisions;

__attribute__((noinline)) int decide(__u32 tgid)
{
	return tgid != 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int with_decision(void *ctx)
{
	if (decide(bpf_get_current_pid_tgid() >> 32))
		__sync_fetch_and_add(&decisions, 1);
	return 0;
}

SEC("freplace/decide")
int replacement(__u32 tgid)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
