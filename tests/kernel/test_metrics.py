"""The metrics plugin: Prometheus text from observer hooks and the public API,
scraped from a real daemon and parsed with the Prometheus client's parser."""

from __future__ import annotations

import os
import socket
import struct
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tc_support import OK, Chain
from xdp_support import attach, dispatchers, load

from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, call_as, running_daemon, veth_pair

# name -> (type, a word its help text must contain: the unit or what is counted)
FAMILIES = {
    "bpfman_program_runs": ("counter", "times"),
    "bpfman_program_run_seconds": ("counter", "seconds"),
    "bpfman_dispatcher_runs": ("counter", "times"),
    "bpfman_dispatcher_run_seconds": ("counter", "seconds"),
    "bpfman_dispatcher_slot": ("gauge", "chain"),
    "bpfman_programs": ("gauge", "programs"),
    "bpfman_links": ("gauge", "links"),
    "bpfman_rpc_requests": ("counter", "requests"),
    "bpfman_rpc_request_duration_seconds": ("histogram", "seconds"),
    "bpfman_build_info": ("gauge", "version"),
}


class Scraper:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) of GET `path`."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=20) as r:
                return r.status, r.headers["Content-Type"], r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], e.read().decode()

    def scrape(self) -> dict[str, tuple[str, str, list[Sample]]]:
        """family name -> (type, help, samples), as Prometheus would parse them."""
        status, ctype, body = self.get("/metrics")
        assert status == 200 and ctype.startswith("text/plain; version="), (status, ctype)
        return {f.name: (f.type, f.documentation, f.samples)
                for f in text_string_to_metric_families(body)}


def value(families: dict[str, tuple[str, str, list[Sample]]], sample_name: str,
          **labels: str) -> float:
    family = sample_name.removesuffix("_total").removesuffix("_count")
    found = [s.value for s in families[family][2]
             if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{len(found)} samples {sample_name}{labels}: {families[family]}"
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def metrics_daemon() -> Iterator[tuple[DaemonProcess, Scraper]]:
    port = free_port()
    config = (f'[daemon]\nsocket_mode = "0666"\n\n'
              f'[plugins.config.metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
    with running_daemon(config) as d:
        os.chmod(d.root, 0o755)  # let call_as's unprivileged client reach the socket
        yield d, Scraper(port)


def test_names_types_help_build_info_and_404(
        metrics_daemon: tuple[DaemonProcess, Scraper]) -> None:
    d, scraper = metrics_daemon
    with pytest.raises(RpcError):
        d.client().call("program.get", {"program_id": 999_999_999})
    denied = call_as(d, "program.load", {
        "path": "/nonexistent.o", "programs": [{"name": "x", "type": "tracepoint"}]})
    assert denied.get("code") == 1500, denied  # nobody may not load
    families = scraper.scrape()
    for name, (kind, word) in FAMILIES.items():
        assert name in families, f"{name} missing from {sorted(families)}"
        assert families[name][0] == kind, (name, families[name][0])
        assert word in families[name][1].lower(), (name, families[name][1])
    assert set(families) == set(FAMILIES), "a family this test does not know of"
    assert not [s for _t, _h, samples in families.values() for s in samples
                if s.name.endswith("_created")]
    [info] = families["bpfman_build_info"][2]
    assert info.value == 1 and info.labels["version"] and info.labels["python"].count(".") == 2
    assert value(families, "bpfman_rpc_requests_total", method="program.get",
                 outcome="not_found") == 1
    assert value(families, "bpfman_rpc_request_duration_seconds_count",
                 method="program.get") == 1
    assert value(families, "bpfman_rpc_requests_total", method="program.load",
                 outcome="permission_denied") == 1
    buckets = [s for s in families["bpfman_rpc_request_duration_seconds"][2]
               if s.name.endswith("_bucket") and s.labels["method"] == "program.get"]
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 1
    for path in ("/", "/foo", "/metricsx", "/metrics/x"):
        status, _ctype, body = scraper.get(path)
        assert status == 404 and "/metrics" in body, (path, status)
    assert scraper.get("/metrics?name[]=bpfman_programs")[0] == 200


def test_tracepoint_runs_grow(metrics_daemon: tuple[DaemonProcess, Scraper],
                              bpf_program: Callable[..., Path]) -> None:
    d, scraper = metrics_daemon
    client = d.client()
    [prog] = client.call("program.load", {
        "path": str(bpf_program("tp_counter")),
        "programs": [{"name": "count_getpid", "type": "tracepoint"}],
        "global_data": {"target_pid": struct.pack("<I", os.getpid()).hex()},
    })["programs"]
    client.call("program.attach", {"program_id": prog["program_id"],
                                   "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
    with pytest.raises(RpcError) as bad:  # the type's params are checked in the method
        client.call("program.attach", {"program_id": prog["program_id"],
                                       "params": {"tracepoint": 5}})
    assert bad.value.code == -32602
    pid = str(prog["program_id"])
    before = scraper.scrape()
    assert value(before, "bpfman_rpc_requests_total", method="program.attach",
                 outcome="invalid_params") == 1
    assert value(before, "bpfman_programs", type="tracepoint") == 1
    assert value(before, "bpfman_links", type="tracepoint") == 1
    runs = value(before, "bpfman_program_runs_total", program_id=pid, name="count_getpid")
    for _ in range(50):
        os.getpid()
    after = scraper.scrape()
    # Every getpid on the host runs it (the filter is inside); ours are 50 of them.
    assert value(after, "bpfman_program_runs_total", program_id=pid) >= runs + 50
    assert value(after, "bpfman_program_run_seconds_total", program_id=pid) > 0
    assert value(after, "bpfman_rpc_requests_total", method="program.load", outcome="ok") == 1
    assert value(after, "bpfman_rpc_request_duration_seconds_count",
                 method="program.attach") == 2
    assert not after["bpfman_dispatcher_runs"][2]  # no shared attach point in use
    # Scrapes read the daemon through its API, but never count themselves.
    assert not [s for s in after["bpfman_rpc_requests"][2]
                if s.labels["method"] in ("program.list", "dispatcher.list")]


def test_xdp_chain_runs_are_the_dispatchers(metrics_daemon: tuple[DaemonProcess, Scraper],
                                            bpf_program: Callable[..., Path]) -> None:
    d, scraper = metrics_daemon
    with veth_pair("metrics") as veth:
        counter = load(d, bpf_program("xdp_counter"), "xdp_counter")
        passer = load(d, bpf_program("xdp_verdict"), "xdp_pass_only")
        attach(d, counter, veth, priority=10)
        [single] = dispatchers(d)
        assert single["mode"] == "single" and single["program_id"] == counter["program_id"]
        assert veth.ping(5) == 5
        alone = scraper.scrape()  # alone it runs as itself: counted on both series
        assert value(alone, "bpfman_program_runs_total",
                     program_id=str(counter["program_id"])) >= 5
        assert value(alone, "bpfman_dispatcher_runs_total", mode="single",
                     program_id=str(counter["program_id"])) >= 5
        attach(d, passer, veth, priority=20)
        [disp] = dispatchers(d)
        assert disp["mode"] == "static"  # the host kernel refuses extension programs
        labels = {"type": "xdp", "mode": "static", "interface": veth.if_b,
                  "netns": veth.netns_b, "program_id": str(disp["program_id"])}
        before = scraper.scrape()
        runs = value(before, "bpfman_dispatcher_runs_total", **labels)
        assert veth.ping(20) == 20
        after = scraper.scrape()
        assert value(after, "bpfman_dispatcher_runs_total", **labels) >= runs + 20
        assert value(after, "bpfman_dispatcher_run_seconds_total", **labels) > 0
        # Spliced into the chain, the programs the user loaded no longer run as themselves.
        assert value(after, "bpfman_program_runs_total",
                     program_id=str(counter["program_id"])) == value(
            before, "bpfman_program_runs_total", program_id=str(counter["program_id"]))
        assert value(after, "bpfman_program_runs_total",
                     program_id=str(passer["program_id"])) == 0
        slots = {(s.labels["position"], s.labels["program_id"])
                 for s in after["bpfman_dispatcher_slot"][2]
                 if s.labels["attach_point"] == disp["attach_point"]}
        assert slots == {("0", str(counter["program_id"])), ("1", str(passer["program_id"]))}
        for prog in (counter, passer):
            d.client().call("program.unload", {"program_id": prog["program_id"]})
    assert not scraper.scrape()["bpfman_dispatcher_runs"][2]


def test_tc_chain_runs_are_the_dispatchers(metrics_daemon: tuple[DaemonProcess, Scraper],
                                           bpf_program: Callable[..., Path]) -> None:
    d, scraper = metrics_daemon
    chain = Chain(d, bpf_program("tc_chain"), "tc")
    with veth_pair("metrics") as veth:
        prog = chain.load(1, OK)
        chain.attach(1, iface=veth.if_b, direction="ingress", priority=10, netns=veth.netns_b)
        [disp] = chain.dispatchers()  # TC always goes through the daemon's dispatcher
        labels = {"type": "tc", "mode": disp["mode"], "interface": veth.if_b,
                  "netns": veth.netns_b, "direction": "ingress",
                  "program_id": str(disp["program_id"])}
        runs = value(scraper.scrape(), "bpfman_dispatcher_runs_total", **labels)
        assert veth.ping(10) == 10
        after = scraper.scrape()
        assert value(after, "bpfman_dispatcher_runs_total", **labels) >= runs + 10
        assert value(after, "bpfman_program_runs_total", program_id=str(prog)) == 0
        assert chain.count(1) >= 10  # it did run, inside the dispatcher
        d.client().call("program.unload", {"program_id": prog})


def test_metrics_are_off_by_default(daemon: DaemonProcess) -> None:
    plugins = {p["name"]: p for p in daemon.client().call("plugin.list")}
    assert "bpfman_rpc_completed" in plugins["metrics"]["hooks"]
    assert "serving Prometheus metrics" not in daemon.log_text()


def test_outcome_names_come_from_the_error_classes() -> None:
    from bpfman_metrics import outcome_names

    names = outcome_names()
    assert names[1100] == "not_found"  # ProgramNotFound, LinkNotFound... share their base's
    assert names[1500] == "permission_denied" and names[-32602] == "invalid_params"
    assert names[2000] == "kernel_error" and names[2001] == "verifier_rejected"
    assert names[-32603] == "internal_error"
    assert len(set(names.values())) == len(names)  # one word per code
