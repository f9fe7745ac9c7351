// SPDX-License-Identifier: GPL-2.0
/* pybpfman's XDP dispatcher, compatible with the libxdp multi-prog protocol
 * (dispatcher versions 2 and 3, chosen with -DDISPATCHER_VERSION=N).
 *
 * Written for this project from the protocol description (names, layout and
 * behaviour are what libxdp and xdp-loader look for): the program is named
 * xdp_dispatcher, has exactly one map (.rodata holding `conf`, frozen and
 * read-only for the program, so the verifier prunes unused slots), and calls
 * the global stubs prog0..prog9, which extension (freplace) programs replace.
 * A stub nobody replaced returns XDP_DISPATCHER_RETVAL (31); bit 31 is set in
 * every slot's chain_call_actions, so an empty slot continues the chain.
 *
 * Each stub also calls bpf_xdp_adjust_tail(ctx, 0), a no-op at run time: it
 * marks the stubs as changing packet data, so the verifier (>= 6.13, and
 * 6.12.107) accepts replacing them with programs that do change packet data.
 *
 * Built by the xdp plugin with clang at first use (never committed as a
 * binary): clang -O2 -g -target bpf -DDISPATCHER_VERSION=2.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef DISPATCHER_VERSION
#define DISPATCHER_VERSION 2
#endif

#define XDP_METADATA_SECTION "xdp_metadata"
#define XDP_DISPATCHER_MAGIC 236
#define XDP_DISPATCHER_RETVAL 31
#define MAX_DISPATCHER_ACTIONS 10

struct xdp_dispatcher_config {
	__u8 magic;                    /* XDP_DISPATCHER_MAGIC */
	__u8 dispatcher_version;       /* DISPATCHER_VERSION */
	__u8 num_progs_enabled;        /* number of active program slots */
	__u8 is_xdp_frags;             /* whether this dispatcher supports frags */
	__u32 chain_call_actions[MAX_DISPATCHER_ACTIONS];
	__u32 run_prios[MAX_DISPATCHER_ACTIONS];
	__u32 program_flags[MAX_DISPATCHER_ACTIONS];
#if DISPATCHER_VERSION >= 3
	__u8 is_xdp_devbound;
#endif
};

/* volatile: clang must not fold the all-zero initial value; the loader
 * writes the real config before load. */
static volatile const struct xdp_dispatcher_config conf = {};

#define STUB(name)                                                   \
	__attribute__((noinline)) int name(struct xdp_md *ctx)           \
	{                                                                \
		volatile int ret = XDP_DISPATCHER_RETVAL;                    \
		if (!ctx)                                                    \
			return XDP_ABORTED;                                      \
		bpf_xdp_adjust_tail(ctx, 0);                                 \
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
STUB(compat_test)

/* One slot: run it, stop with its verdict unless the verdict is in the
 * slot's proceed-on set. */
#define SLOT(i)                                                      \
	if (num_progs_enabled < (i) + 1)                                 \
		goto out;                                                    \
	ret = prog##i(ctx);                                              \
	if (!((1U << ret) & conf.chain_call_actions[i]))                 \
		return ret;

SEC("xdp")
int xdp_dispatcher(struct xdp_md *ctx)
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
	/* Never reached with at most 10 programs; keeps compat_test a valid
	 * freplace target that is part of the program. */
	if (num_progs_enabled < 11)
		goto out;
	ret = compat_test(ctx);
out:
	return XDP_PASS;
}

/* Target of the kernel compatibility probe (load, freplace, attach). */
SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
__uint(dispatcher_version, DISPATCHER_VERSION) SEC(XDP_METADATA_SECTION);
