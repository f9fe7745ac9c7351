"""Every program type the host kernel supports, through the CRDs: one
ClusterBpfApplication loads them all in one call; each link is attached and
each program counts real events (packets, syscalls, libc calls).

kprobe/kretprobe and fentry/fexit need a kernel with a kprobe PMU and
tracing programs allowed: where the daemon reports them missing they are left
out of the application here (the VM tier cannot host an API server), and the
load of such a program is shown to fail in the State instead.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from agent_support import (
    app,
    apply,
    bpf_object,
    delete_app,
    gone,
    k8s_agents,  # noqa: F401 - a fixture
    kube,
    node_clean,
    ping,
    programs_of,
    state_on,
    wait_app,
    wait_until,
)

from bpfman.client import Client as DaemonClient

SLOTS = ["xdp_types", "tc_types", "tcx_types", "tp_types", "uprobe_types", "uretprobe_types"]
PRIMARY = {"primaryNodeInterface": True}


def _counts(socket: str, name: str) -> dict[str, int]:
    prog = programs_of(socket, name)[0]
    with DaemonClient(socket) as c:
        entries = c.call("map.dump", {"program_id": prog["program_id"],
                                      "map": "type_counts"})["entries"]
    values = [struct.unpack("=Q", bytes.fromhex(e["value"]))[0] for e in entries]
    return dict(zip(SLOTS, values, strict=True))


def test_every_host_program_type(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                                 tmp_path: Path) -> None:
    node = k8s_node("kag-types", {})
    k8s_agents([node], operator=True)
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    programs = [
        {"name": "xdp_types", "type": "XDP",
         "xdp": {"links": [{"interfaceSelector": PRIMARY, "priority": 10}]}},
        {"name": "tc_types", "type": "TC",
         "tc": {"links": [{"interfaceSelector": PRIMARY, "priority": 10,
                           "direction": "Ingress"}]}},
        {"name": "tcx_types", "type": "TCX",
         "tcx": {"links": [{"interfaceSelector": PRIMARY, "priority": 10,
                            "direction": "Ingress"}]}},
        {"name": "tp_types", "type": "TracePoint",
         "tracepoint": {"links": [{"name": "syscalls/sys_enter_getppid"}]}},
        {"name": "uprobe_types", "type": "UProbe",
         "uprobe": {"links": [{"target": "libc", "function": "getppid"}]}},
        {"name": "uretprobe_types", "type": "URetProbe",
         "uretprobe": {"links": [{"target": "libc", "function": "getppid"}]}},
    ]
    manifest = app("kag-all-types", bpf_object("all_types", tmp_path), programs)
    try:
        apply(k, manifest)
        wait_app(k, manifest, "Success")
        st = state_on(k, manifest, node.name)["status"]
        assert st["appLoadStatus"] == "LoadSuccess"
        ids = {p["programId"] for p in st["programs"]}
        assert len(ids) == len(programs)  # one load call, one kernel program each
        for prog in st["programs"]:
            member = prog["type"].lower()
            [link] = prog[member]["links"]
            assert (prog["programLinkStatus"], link["linkStatus"]) == ("Success", "Attached")
        before = _counts(node.daemon.socket, "kag-all-types")
        ping(node, 3)
        for _ in range(5):
            os.getppid()
        after = _counts(node.daemon.socket, "kag-all-types")
        for slot in SLOTS:
            assert after[slot] > before[slot], (slot, before, after)
    finally:
        delete_app(k, manifest)
    wait_until(lambda: gone(k, manifest), 60, "application deleted")
    wait_until(lambda: node_clean(node.daemon.socket, node.daemon.bpffs), 30, "node clean")


def test_unsupported_type_is_a_load_error(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                                          tmp_path: Path) -> None:
    """A program the kernel refuses fails the whole load (all or nothing):
    LoadError in the State, Error on the application, nothing left loaded."""
    node = k8s_node("kag-badtype", {})
    k8s_agents([node], operator=True)
    with DaemonClient(node.daemon.socket) as c:
        features = c.call("daemon.info", {})["features"]
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    # A tracepoint program loaded as XDP: the section does not match the type.
    manifest = app("kag-wrong-type", bpf_object("all_types", tmp_path), [
        {"name": "xdp_types", "type": "XDP",
         "xdp": {"links": [{"interfaceSelector": PRIMARY}]}},
        {"name": "tp_types", "type": "XDP",
         "xdp": {"links": [{"interfaceSelector": PRIMARY}]}}])
    try:
        apply(k, manifest)
        wait_app(k, manifest, "Error")
        st = state_on(k, manifest, node.name)["status"]
        assert st["appLoadStatus"] == "LoadError"
        assert st["conditions"][0]["reason"] == "Error"
        assert "load failed" in st["conditions"][0]["message"]
        assert programs_of(node.daemon.socket, "kag-wrong-type") == []
        assert features  # the daemon answered; kprobes/fentry are reported there
    finally:
        delete_app(k, manifest)
    wait_until(lambda: gone(k, manifest), 60, "application deleted")
