"""Fixtures of the k8s tier: a real etcd + kube-apiserver for the whole session, and
simulated nodes (Node object, netns, daemon, agent) per test. See cluster.py.

The binaries come from scripts/k8s-control-plane.sh (BPFMAN_K8S_BIN, or its default
cache). Without them the tier is skipped, unless BPFMAN_K8S_REQUIRED=1 (setup.sh test
sets it), where it fails instead: a CI run must not pass by skipping.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster import Cluster, SimNode, bin_dir, binaries_missing, running_cluster


def _unavailable(reason: str) -> None:
    if os.environ.get("BPFMAN_K8S_REQUIRED") == "1":
        pytest.fail(f"{reason} (BPFMAN_K8S_REQUIRED=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[Cluster]:
    """etcd + kube-apiserver (TLS, token auth, RBAC, SA tokens), CRDs, RBAC and the
    admission policy from operator/ installed. Shared by every test of the session:
    use unique object names."""
    if missing := binaries_missing():
        _unavailable(f"{', '.join(missing)} not in {bin_dir()}: "
                     "run scripts/k8s-control-plane.sh")
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def k8s_node(k8s_cluster: Cluster, request: pytest.FixtureRequest
             ) -> Iterator[Callable[..., SimNode]]:
    """Factory: ``k8s_node("node-a", {"zone": "a"}, start_daemon=True)`` -> SimNode.

    Every node made (its agent, daemon, pins, pods, netns, Node object) is removed at
    the end of the test, whatever happened; on failure their logs are printed.
    """
    if os.geteuid() != 0:
        _unavailable("simulated nodes need root (network namespaces, the daemon)")
    made: list[SimNode] = []

    def make(name: str, labels: dict[str, str] | None = None, *,
             start_daemon: bool = True) -> SimNode:
        node = SimNode(k8s_cluster, name, labels, start_daemon=start_daemon)
        made.append(node)
        node.setup()
        return node

    yield make
    failed = getattr(request.node, "rep_call", None)
    for node in reversed(made):
        if failed is not None and failed.failed:
            sys.stderr.write(node.dump_logs() + "\n")
        node.cleanup()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    # Lets fixtures see whether the test body failed (to print node logs).
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


@pytest.fixture
def make_pod() -> Callable[..., dict]:
    """``make_pod(node, "pod-a", "ns", {"app": "x"}, containers=..., commands=...)``: a
    Running Pod bound to `node` with its own netns (see SimNode.make_pod); removed with
    the node."""

    def make(node: SimNode, name: str, namespace: str = "default",
             labels: dict[str, str] | None = None, **kw: object) -> dict:
        return node.make_pod(name, namespace, labels, **kw)  # type: ignore[arg-type]

    return make
