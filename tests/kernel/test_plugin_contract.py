"""The plugin contract (bpfman.testing.PluginContract) for every program
type the host kernel runs, built-in or third-party: the same checks, through
the same API, whatever plugin owns the type. Types the host kernel refuses
(kprobe, fentry/fexit, lsm) are exercised in the VM tier."""

from __future__ import annotations

import os
import platform
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bpfman.testing import ContractCase, PluginContract, VethPair

ARCH = {"x86_64": "x86", "aarch64": "arm64"}[platform.machine()]
CGROUP2 = Path("/sys/fs/cgroup/unified")
PID = struct.pack("<I", os.getpid()).hex()
Build = Callable[..., Path]


@pytest.fixture
def cgroup_dir() -> Iterator[Path]:
    path = CGROUP2 / f"contract-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        path.rmdir()


class TestTracepoint(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build) -> ContractCase:
        return ContractCase(bpf_program("tp_counter"), "count_getpid", "tracepoint",
                            {"tracepoint": "syscalls/sys_enter_getpid"}, {"target_pid": PID})


class TestRawTracepointThirdParty(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build) -> ContractCase:
        return ContractCase(bpf_program("raw_tp_counter"), "count_sys_enter", "raw_tracepoint",
                            {"name": "sys_enter"}, {"target_pid": PID})


class TestUprobe(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build) -> ContractCase:
        return ContractCase(bpf_program("uprobe_counter", **{f"__TARGET_ARCH_{ARCH}": "1"}),
                            "count_entry", "uprobe",
                            {"target": "libc", "fn_name": "malloc", "pid": os.getpid()})


class TestPerfEvent(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build) -> ContractCase:
        return ContractCase(bpf_program("perf_counter"), "count_samples", "perf_event",
                            {"event": "cpu-clock", "frequency": 100})


class TestXdp(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build, veth: VethPair) -> ContractCase:
        return ContractCase(bpf_program("xdp_counter"), "xdp_counter", "xdp",
                            {"iface": veth.if_b, "netns": veth.netns_b})


class TestTc(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build, veth: VethPair) -> ContractCase:
        return ContractCase(bpf_program("tc_chain"), "tc_chain", "tc",
                            {"iface": veth.if_b, "direction": "ingress", "netns": veth.netns_b})


class TestTcx(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build, veth: VethPair) -> ContractCase:
        return ContractCase(bpf_program("tc_chain"), "tc_chain", "tcx",
                            {"iface": veth.if_b, "direction": "egress", "netns": veth.netns_b})


class TestCgroupSkb(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build, cgroup_dir: Path) -> ContractCase:
        return ContractCase(bpf_program("cgroup_net"), "skb_count", "cgroup_skb",
                            {"cgroup": str(cgroup_dir), "attach_type": "egress"})


class TestSkLookup(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build, veth: VethPair) -> ContractCase:
        return ContractCase(bpf_program("sk_lookup_steer"), "steer", "sk_lookup",
                            {"netns": veth.netns_b})


class TestNetfilter(PluginContract):
    @pytest.fixture
    def contract_case(self, bpf_program: Build, veth: VethPair) -> ContractCase:
        return ContractCase(bpf_program("nf_count"), "nf_count", "netfilter",
                            {"family": "ipv4", "hook": "input", "priority": 10,
                             "netns": veth.netns_b})
