// SPDX-License-Identifier: GPL-2.0
/* pybpfman's TC dispatcher for kernels that load extension (freplace)
 * programs. Written for this project after bpfman's TC dispatcher design:
 * `conf` (read-only .rodata, written by the loader before load) holds the
 * number of programs and each slot's proceed-on mask; the global stubs
 * prog0..prog9 are what the programs replace. A stub nobody replaced returns
 * TC_DISPATCHER_RETVAL (30); return code r is bit (r + 1) of a mask, so
 * TC_ACT_UNSPEC (-1) is bit 0 and 30 is bit 31. When every slot proceeded
 * the verdict is TC_ACT_OK.
 *
 * Built by the tc plugin with clang at first use (never committed as a
 * binary): clang -O2 -g -target bpf.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define TC_DISPATCHER_RETVAL 30
#define MAX_DISPATCHER_ACTIONS 10

struct tc_dispatcher_config {
	__u8 num_progs_enabled;
	__u32 chain_call_actions[MAX_DISPATCHER_ACTIONS];
	__u32 run_prios[MAX_DISPATCHER_ACTIONS];
};

static volatile const struct tc_dispatcher_config conf = {};

#define STUB(name)                                                   \
	__attribute__((noinline)) int name(struct __sk_buff *skb)        \
	{                                                                \
		volatile int ret = TC_DISPATCHER_RETVAL;                     \
		if (!skb)                                                    \
			return TC_ACT_UNSPEC;                                    \
		return ret;                                                  \
	}

STUB(prog0)
STUB(prog1)
STUB(prog2)
STUB(prog3)
STUB(prog4)
STUB(prog5)
STUB(prog6)
STUB(prog7)
STUB(prog8)
STUB(prog9)

#define SLOT(i)                                                      \
	if (num_progs_enabled < (i) + 1)                                 \
		goto out;                                                    \
	ret = prog##i(skb);                                              \
	if (!((1U << (ret + 1)) & conf.chain_call_actions[i]))           \
		return ret;

SEC("classifier")
int tc_dispatcher(struct __sk_buff *skb)
{
	__u8 num_progs_enabled = conf.num_progs_enabled;
	int ret;

	SLOT(0)
	SLOT(1)
	SLOT(2)
	SLOT(3)
	SLOT(4)
	SLOT(5)
	SLOT(6)
	SLOT(7)
	SLOT(8)
	SLOT(9)
out:
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
