"""Helpers for the agent/operator end-to-end tests: running bpfman-agent and
bpfman-operator as processes, application manifests, waiting on conditions,
reading the demo counter through the node's daemon (as a pod would)."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from bpfman.client import Client as DaemonClient
from bpfman.testing import compile_bpf
from bpfman_operator import api
from bpfman_operator.kube import Client, load_config

PROGRAMS = Path(__file__).parent / "programs"
BIN = Path(sys.executable).parent


def bpf_object(name: str, out_dir: Path) -> str:
    """tests/k8s/programs/NAME.bpf.c compiled (cached) into `out_dir`."""
    return str(compile_bpf(PROGRAMS / f"{name}.bpf.c", out_dir))


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
               interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Proc:
    """A bpfman-agent or bpfman-operator process with its log in a file."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, dict(env), log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.popen = subprocess.Popen(self.argv, env={**os.environ, **self.env},
                                          stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)
            self.popen.wait(20)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def agent_proc(env: Mapping[str, str], log: Path, log_level: str = "debug",
               **extra: str) -> Proc:
    return Proc([str(BIN / "bpfman-agent"), "--log-level", log_level],
                {"BPFMAN_AGENT_RESYNC": "30", **env, **extra}, log)


def operator_proc(kubeconfig: str, log: Path, log_level: str = "debug") -> Proc:
    return Proc([str(BIN / "bpfman-operator"), "--log-level", log_level],
                {"KUBECONFIG": kubeconfig, "BPFMAN_OPERATOR_RESYNC": "30"}, log)


def kube(kubeconfig: str) -> Client:
    return Client(load_config(kubeconfig))


# -- manifests ---------------------------------------------------------------------
DOCS = Path(__file__).parents[2] / "docs" / "kubernetes.md"


def doc_manifests(section: str, objects: Mapping[str, str]) -> list[dict[str, Any]]:
    """The YAML blocks of a docs/kubernetes.md section, as a reader copies them,
    with each object path the doc builds under /tmp/pybpfman-demo/ replaced by
    the test's own (`objects`: file name -> path)."""
    text = DOCS.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    manifests = []
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        for name, path in objects.items():
            block = block.replace(f"/tmp/pybpfman-demo/{name}", path)
        manifests.append(yaml.safe_load(block))
    return manifests


def xdp_app(name: str, path: str, program: str, *, priority: int | None = None,
            proceed_on: list[str] | None = None, node_selector: dict | None = None,
            interface_selector: dict | None = None, namespace: str | None = None,
            network_namespaces: dict | None = None) -> dict[str, Any]:
    link: dict[str, Any] = {"interfaceSelector": interface_selector
                            or {"primaryNodeInterface": True}}
    if priority is not None:
        link["priority"] = priority
    if proceed_on is not None:
        link["proceedOn"] = proceed_on
    if network_namespaces is not None:
        link["networkNamespaces"] = network_namespaces
    return app(name, path, [{"name": program, "type": "XDP", "xdp": {"links": [link]}}],
               node_selector=node_selector, namespace=namespace)


def app(name: str, path: str, programs: list[dict[str, Any]], *,
        node_selector: dict | None = None, namespace: str | None = None,
        global_data: dict | None = None) -> dict[str, Any]:
    kind = api.NS_APP if namespace else api.CLUSTER_APP
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    spec: dict[str, Any] = {"nodeSelector": {} if node_selector is None else node_selector,
                            "byteCode": {"path": path}, "programs": programs}
    if global_data:
        spec["globalData"] = global_data
    return {"apiVersion": api.API_VERSION, "kind": kind.kind, "metadata": meta, "spec": spec}


def apply(k: Client, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create, or replace the spec of an existing application."""
    kind = api.NS_APP if manifest["kind"] == api.NS_APP.kind else api.CLUSTER_APP
    meta = manifest["metadata"]
    current = k.get_or_none(kind, meta["name"], meta.get("namespace"))
    if current is None:
        return k.create(kind, manifest, meta.get("namespace"))
    return k.patch(kind, meta["name"], {"spec": manifest["spec"]}, meta.get("namespace"))


def delete_app(k: Client, manifest: dict[str, Any]) -> None:
    kind = api.NS_APP if manifest["kind"] == api.NS_APP.kind else api.CLUSTER_APP
    k.delete(kind, manifest["metadata"]["name"], manifest["metadata"].get("namespace"))


def app_kind(manifest: Mapping[str, Any]) -> api.Kind:
    return api.NS_APP if manifest["kind"] == api.NS_APP.kind else api.CLUSTER_APP


def app_condition(k: Client, manifest: Mapping[str, Any]) -> str | None:
    meta = manifest["metadata"]
    obj = k.get_or_none(app_kind(manifest), meta["name"], meta.get("namespace"))
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return conds[0]["type"] if conds else None


def wait_app(k: Client, manifest: Mapping[str, Any], ctype: str = "Success",
             timeout: float = 60.0) -> None:
    wait_until(lambda: app_condition(k, manifest) == ctype, timeout,
               f"{manifest['metadata']['name']} condition {ctype}")


def states(k: Client, manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    meta = manifest["metadata"]
    kind = api.STATE_OF[manifest["kind"]]
    return k.list(kind, meta.get("namespace"),
                  label_selector=f"{api.LABEL_OWNER}={meta['name']}")["items"]


def state_on(k: Client, manifest: Mapping[str, Any], node: str) -> dict[str, Any] | None:
    mine = [s for s in states(k, manifest)
            if s["metadata"]["labels"].get(api.LABEL_HOSTNAME) == node]
    assert len(mine) <= 1, f"more than one State for {node}: {mine}"
    return mine[0] if mine else None


def gone(k: Client, manifest: Mapping[str, Any]) -> bool:
    meta = manifest["metadata"]
    return (k.get_or_none(app_kind(manifest), meta["name"], meta.get("namespace")) is None
            and not states(k, manifest))


def ping(node: Any, count: int = 3) -> None:
    """`count` pings to the node's InternalIP from outside the node (its
    uplink's other end), each answered: the packets cross the node's eth0."""
    subprocess.run(["ip", "netns", "exec", node.ext_netns, "ping", "-c", str(count), "-i", "0.2",
                    "-W", "2", "-q", node.ip], check=True, capture_output=True, timeout=60)


# -- the daemon side ---------------------------------------------------------------
def programs_of(socket: str, app_name: str | None = None) -> list[dict[str, Any]]:
    with DaemonClient(socket) as c:
        progs = c.call("program.list", {})
    return [p for p in progs if api.META_UUID in (p.get("metadata") or {})
            and (app_name is None or p["metadata"].get(api.META_PROGRAM_NAME) == app_name)]


def links_of(socket: str, program_id: int) -> list[dict[str, Any]]:
    with DaemonClient(socket) as c:
        return c.call("link.list", {"program_id": program_id})


def demo_count(socket: str, app_name: str = "go-xdp-counter-example") -> int:
    """Packets counted by the demo counter on one node: what the upstream
    go-xdp-counter pod logs, read through the daemon's map API."""
    [prog] = programs_of(socket, app_name)
    with DaemonClient(socket) as c:
        reply = c.call("map.get", {"program_id": prog["program_id"], "map": "xdp_stats_map",
                                   "key": struct.pack("=I", 2).hex()})
    value = bytes.fromhex(reply["value"])
    return sum(struct.unpack_from("=QQ", value, off)[0] for off in range(0, len(value), 16))


def node_clean(socket: str, bpffs: str | Path) -> bool:
    """No program of ours, no link, no dispatcher, no pin left on a node."""
    with DaemonClient(socket) as c:
        progs = c.call("program.list", {})
        dispatchers = c.call("dispatcher.list", {})
        links = c.call("link.list", {})
    pins = [p for p in Path(bpffs).rglob("*") if p.is_file()
            and not p.name.endswith(".debug")] if Path(bpffs).exists() else []
    return not progs and not dispatchers and not links and not pins


# -- fixtures (imported by the test modules that use them) ----------------------------
@pytest.fixture
def k8s_agents(k8s_cluster: Any, tmp_path: Path) -> Iterator[Callable[..., list[Proc]]]:
    """``k8s_agents(nodes, operator=True)``: one bpfman-agent per node (under
    the node's own token) and, if asked, the operator; all stopped at the end,
    their logs printed (pytest shows them when the test fails)."""
    procs: list[Proc] = []

    def start(nodes: list[Any], *, operator: bool = True) -> list[Proc]:
        started = [agent_proc(n.agent_env(), tmp_path / f"agent-{n.name}.log").start()
                   for n in nodes]
        if operator:
            started.append(operator_proc(k8s_cluster.kubeconfig_for("operator"),
                                         tmp_path / "operator.log").start())
        procs.extend(started)
        return started

    yield start
    for proc in procs:
        proc.stop()
    for proc in procs:
        print(f"==== {proc.log.name}\n{proc.text()[-20000:]}")
