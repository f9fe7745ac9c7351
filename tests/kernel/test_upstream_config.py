"""Upstream bpfman's /etc/bpfman/bpfman.toml, run by the real daemon.

The sample file (tests/fixtures/upstream-bpfman.toml) starts the daemon, and
upstream's per-interface ``[interfaces.NAME] xdp_mode`` decides how XDP is
attached on that interface: veth pairs in namespaces the test creates, the
mode read back from the kernel (``ip -j link show``: IFLA_XDP_ATTACHED).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from xdp_support import attach, counts, load

from bpfman.client import RpcError
from bpfman.testing import VethPair, running_daemon, veth_pair

SAMPLE = Path(__file__).parents[1] / "fixtures" / "upstream-bpfman.toml"
# linux/if_link.h IFLA_XDP_ATTACHED, as iproute2 shows it ("xdp", "xdpgeneric")
ATTACHED = {0: None, 1: "native", 2: "generic", 3: "offload", 4: "multi"}


def attached_mode(ns: str, ifname: str) -> str | None:
    out = subprocess.run(["ip", "-n", ns, "-j", "-d", "link", "show", ifname],
                         capture_output=True, text=True, check=True).stdout
    [link] = json.loads(out)
    return ATTACHED[link.get("xdp", {}).get("mode", 0)]


def test_upstream_sample_file_starts_the_daemon() -> None:
    with running_daemon(SAMPLE.read_text()) as d:
        info = d.client().call("daemon.info")
        assert info["version"]
        log = d.log_text()
        # logged as warnings, never fatal (the test's --log-level debug wins over
        # the file's [logging] level, and says so)
        assert "WARNING bpfman.daemon: " in log
        assert "[database] max_retries/millisec_delay have no effect here" in log
        assert "[logging] level 'info' ignored" in log


def test_upstream_xdp_mode_per_interface(bpf_program: Callable[..., Path]) -> None:
    with veth_pair("upcfg") as skb, veth_pair("upcfg") as drv:
        # Interface names are this test's own (pid-unique); eth0 is never touched.
        config = (f'[interfaces."{skb.if_b}"]\nxdp_mode = "skb"\n'
                  f'[interfaces."{drv.if_b}"]\nxdp_mode = "drv"\n'
                  f'[interfaces."{skb.if_a}"]\nxdp_mode = "hw"\n')
        with running_daemon(config) as d:
            counter = load(d, bpf_program("xdp_counter"), "xdp_counter")
            attach(d, counter, skb)
            attach(d, counter, drv)
            # veth has native XDP: only the configured skb makes it generic.
            assert attached_mode(skb.ns_b, skb.if_b) == "generic"
            assert attached_mode(drv.ns_b, drv.if_b) == "native"
            out = subprocess.run(["ip", "-n", skb.ns_b, "-d", "link", "show", skb.if_b],
                                 capture_output=True, text=True, check=True).stdout
            assert "xdpgeneric" in out
            before = counts(counter)[0]
            assert skb.ping(2) == 2 and counts(counter)[0] >= before + 2
            # hw is offload, forced: veth cannot, and that is an error here
            # (upstream falls back to skb silently), with nothing attached.
            with pytest.raises(RpcError) as err:
                attach(d, counter, _a_end(skb))
            assert "offload mode" in err.value.message, err.value.message
            assert attached_mode(skb.ns_a, skb.if_a) is None


def _a_end(pair: VethPair) -> VethPair:
    """`pair` seen from its A end, for `attach` (which attaches to B)."""
    mirror = VethPair.__new__(VethPair)
    mirror.__dict__.update(pair.__dict__, ns_b=pair.ns_a, if_b=pair.if_a)
    return mirror
