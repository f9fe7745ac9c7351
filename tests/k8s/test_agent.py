"""bpfman-agent and bpfman-operator against a real API server and simulated
nodes (own daemon, netns and agent each): node selection and label changes,
deletion, load errors without a hot retry loop, an agent killed with -9 in
the middle of its work, a daemon restart, an API server restart, competing
priorities, network namespaces of pods, the immutable program list and a
namespaced BpfApplication."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
from agent_support import (
    app,
    apply,
    bpf_object,
    delete_app,
    gone,
    k8s_agents,  # noqa: F401 - a fixture
    kube,
    links_of,
    node_clean,
    programs_of,
    state_on,
    wait_app,
    wait_until,
    xdp_app,
)

from bpfman.client import Client as DaemonClient
from bpfman_operator import api


def _load_status(k, manifest, node) -> str | None:
    st = state_on(k, manifest, node.name)
    return ((st or {}).get("status") or {}).get("appLoadStatus")


def _loaded_on(node, name: str) -> int:
    return len(programs_of(node.daemon.socket, name))


@pytest.fixture
def obj(tmp_path: Path):
    return lambda name: bpf_object(name, tmp_path)


def test_node_selector_and_label_changes(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                                         obj) -> None:
    a = k8s_node("kag-sel-a", {"role": "edge"})
    b = k8s_node("kag-sel-b", {"role": "core"})
    k8s_agents([a, b])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    manifest = xdp_app("kag-edge-only", obj("xdp_stats"), "xdp_stats", priority=20,
                       node_selector={"matchExpressions": [
                           {"key": "role", "operator": "In", "values": ["edge"]}]})
    try:
        apply(k, manifest)
        wait_app(k, manifest, "Success")
        # One State per node, also where not selected.
        assert _load_status(k, manifest, a) == "LoadSuccess"
        assert _load_status(k, manifest, b) == "NotSelected"
        assert (_loaded_on(a, "kag-edge-only"), _loaded_on(b, "kag-edge-only")) == (1, 0)
        # b becomes an edge node, a stops being one: the program moves.
        k.patch(api.NODE, b.name, {"metadata": {"labels": {"role": "edge"}}})
        k.patch(api.NODE, a.name, {"metadata": {"labels": {"role": None}}})
        wait_until(lambda: _load_status(k, manifest, b) == "LoadSuccess"
                   and _load_status(k, manifest, a) == "NotSelected", 30, "program moved")
        assert (_loaded_on(a, "kag-edge-only"), _loaded_on(b, "kag-edge-only")) == (0, 1)
        wait_app(k, manifest, "Success")
    finally:
        delete_app(k, manifest)
    wait_until(lambda: gone(k, manifest), 60, "application deleted")
    for node in (a, b):
        assert node_clean(node.daemon.socket, node.daemon.bpffs)


def test_load_error_in_status_without_hot_loop(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                                               obj, tmp_path: Path) -> None:
    node = k8s_node("kag-loaderr", {})
    [agent, _op] = k8s_agents([node])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    manifest = xdp_app("kag-missing-object", str(tmp_path / "missing.bpf.o"), "xdp_stats")
    try:
        apply(k, manifest)
        wait_app(k, manifest, "Error")
        st = state_on(k, manifest, node.name)
        assert st["status"]["appLoadStatus"] == "LoadError"
        assert "missing.bpf.o" in st["status"]["conditions"][0]["message"]
        app_obj = k.get(api.CLUSTER_APP, "kag-missing-object")
        assert st["metadata"]["name"] in app_obj["status"]["conditions"][0]["message"]
        count = st["status"]["updateCount"]
        time.sleep(4)  # no retry storm: one failed load, the status written once
        assert state_on(k, manifest, node.name)["status"]["updateCount"] == count
        assert len(re.findall("load failed", agent.text())) == 1
        # Fixing the spec (a new generation) retries at once.
        manifest["spec"]["byteCode"]["path"] = obj("xdp_stats")
        apply(k, manifest)
        wait_app(k, manifest, "Success")
    finally:
        delete_app(k, manifest)
    wait_until(lambda: gone(k, manifest), 60, "application deleted")


def test_program_list_is_immutable(k8s_cluster, k8s_node, k8s_agents, obj) -> None:  # noqa: F811
    node = k8s_node("kag-immutable", {})
    k8s_agents([node])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    manifest = xdp_app("kag-fixed-list", obj("xdp_stats"), "xdp_stats")
    try:
        apply(k, manifest)
        wait_app(k, manifest, "Success")
        manifest["spec"]["programs"][0]["name"] = "xdp_other"
        apply(k, manifest)
        wait_app(k, manifest, "Error")
        st = state_on(k, manifest, node.name)["status"]
        assert st["appLoadStatus"] == "ProgramListChangedError"
        assert st["conditions"][0]["reason"] == "ProgramListChangedError"
        assert _loaded_on(node, "kag-fixed-list") == 1  # what was loaded stays
    finally:
        delete_app(k, manifest)
    wait_until(lambda: gone(k, manifest), 60, "application deleted")
    assert node_clean(node.daemon.socket, node.daemon.bpffs)


def _expected_everywhere(k, manifests, node) -> bool:
    for m in manifests:
        st = state_on(k, m, node.name)
        if not st or (st.get("status") or {}).get("appLoadStatus") != "LoadSuccess":
            return False
        if st["status"]["conditions"][0]["type"] != "Success":
            return False
    return True


def test_agent_killed_mid_reconcile_adopts_what_is_there(k8s_cluster, k8s_node,
                                                         k8s_agents, obj) -> None:  # noqa: F811
    """SIGKILL at random moments while three applications are being loaded
    and attached; after the last restart each application has exactly one
    State, one program set and one link on the node: nothing loaded twice,
    nothing leaked."""
    node = k8s_node("kag-kill", {})
    [agent, _op] = k8s_agents([node])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    rng = random.Random(15)
    manifests = [xdp_app(f"kag-kill-{i}", obj("xdp_stats"), "xdp_stats", priority=30 + i)
                 for i in range(3)]
    try:
        for m in manifests:
            apply(k, m)
        for _ in range(6):
            time.sleep(rng.uniform(0.05, 0.6))
            agent.kill()
            agent.start()
        for m in manifests:
            wait_app(k, m, "Success", timeout=90)
        wait_until(lambda: _expected_everywhere(k, manifests, node), 60, "all loaded")
        for m in manifests:
            name = m["metadata"]["name"]
            [prog] = programs_of(node.daemon.socket, name)
            assert len(links_of(node.daemon.socket, prog["program_id"])) == 1
            st = state_on(k, m, node.name)  # asserts a single State
            assert prog["metadata"][api.META_UUID] == st["metadata"]["uid"]
        # Kill it again in the middle of the deletions.
        for m in manifests:
            delete_app(k, m)
        time.sleep(0.1)
        agent.kill()
        agent.start()
    finally:
        for m in manifests:
            delete_app(k, m)
    wait_until(lambda: all(gone(k, m) for m in manifests), 90, "applications deleted")
    wait_until(lambda: node_clean(node.daemon.socket, node.daemon.bpffs), 30, "node clean")


def test_daemon_restart(k8s_cluster, k8s_node, k8s_agents, obj) -> None:  # noqa: F811
    """The daemon restarts (programs stay pinned): the agent reconnects, finds
    them again, changes nothing, and handles the next application."""
    node = k8s_node("kag-daemon", {})
    k8s_agents([node])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    first = xdp_app("kag-survivor", obj("xdp_stats"), "xdp_stats", priority=40)
    second = xdp_app("kag-after-restart", obj("xdp_pass"), "pass", priority=45)
    try:
        apply(k, first)
        wait_app(k, first, "Success")
        [before] = programs_of(node.daemon.socket, "kag-survivor")
        count = state_on(k, first, node.name)["status"]["updateCount"]
        node.daemon.stop()
        node.daemon.start()
        apply(k, second)
        wait_app(k, second, "Success", timeout=60)
        [after] = programs_of(node.daemon.socket, "kag-survivor")
        assert after["program_id"] == before["program_id"]
        assert state_on(k, first, node.name)["status"]["updateCount"] == count
    finally:
        delete_app(k, first)
        delete_app(k, second)
    wait_until(lambda: gone(k, first) and gone(k, second), 60, "applications deleted")
    wait_until(lambda: node_clean(node.daemon.socket, node.daemon.bpffs), 30, "node clean")


def test_api_server_restart(k8s_cluster, k8s_node, k8s_agents, obj) -> None:  # noqa: F811
    node = k8s_node("kag-apirestart", {})
    k8s_agents([node])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    first = xdp_app("kag-before-api-restart", obj("xdp_stats"), "xdp_stats", priority=40)
    second = xdp_app("kag-after-api-restart", obj("xdp_pass"), "pass", priority=45)
    try:
        apply(k, first)
        wait_app(k, first, "Success")
        k8s_cluster.restart_apiserver()
        k = kube(k8s_cluster.kubeconfig_for("admin"))
        apply(k, second)
        wait_app(k, second, "Success", timeout=90)
        assert _loaded_on(node, "kag-before-api-restart") == 1
    finally:
        delete_app(k, first)
        delete_app(k, second)
    wait_until(lambda: gone(k, first) and gone(k, second), 90, "applications deleted")
    wait_until(lambda: node_clean(node.daemon.socket, node.daemon.bpffs), 30, "node clean")


def test_two_applications_compete_by_priority(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                                              obj) -> None:
    node = k8s_node("kag-prio", {})
    k8s_agents([node])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    low = xdp_app("kag-prio-low", obj("xdp_stats"), "xdp_stats", priority=70)
    high = xdp_app("kag-prio-high", obj("xdp_pass"), "pass", priority=20)

    def order() -> list[str]:
        with DaemonClient(node.daemon.socket) as c:
            dispatchers = c.call("dispatcher.list", {})
        names = {p["program_id"]: p["metadata"][api.META_PROGRAM_NAME]
                 for p in programs_of(node.daemon.socket)}
        return [names.get(s["program_id"], "?") for d in dispatchers for s in d["slots"]]

    try:
        apply(k, low)
        apply(k, high)
        wait_app(k, low, "Success")
        wait_app(k, high, "Success")
        assert order() == ["kag-prio-high", "kag-prio-low"]
        high["spec"]["programs"][0]["xdp"]["links"][0]["priority"] = 90
        apply(k, high)
        wait_until(lambda: order() == ["kag-prio-low", "kag-prio-high"], 30, "re-ordered chain")
    finally:
        delete_app(k, low)
        delete_app(k, high)
    wait_until(lambda: gone(k, low) and gone(k, high), 60, "applications deleted")
    wait_until(lambda: node_clean(node.daemon.socket, node.daemon.bpffs), 30, "node clean")


def test_network_namespaces_of_selected_pods(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                                             obj) -> None:
    """networkNamespaces: one link per Running pod on the node that the pod
    selector matches, in that pod's namespace; a new pod gets one, a deleted
    pod's link goes."""
    node = k8s_node("kag-netns", {})
    k8s_agents([node])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    manifest = xdp_app("kag-pod-xdp", obj("xdp_stats"), "xdp_stats", priority=25,
                       interface_selector={"interfaces": ["eth0"]},
                       network_namespaces={"namespace": "default",
                                           "pods": {"matchLabels": {"app": "kag-web"}}})

    def netns_paths() -> set[str]:
        st = state_on(k, manifest, node.name)
        progs = ((st or {}).get("status") or {}).get("programs") or []
        return {lk["netnsPath"] for p in progs for lk in p["xdp"]["links"]
                if lk.get("linkStatus") == "Attached"}

    pod1 = node.make_pod("kag-web-1", labels={"app": "kag-web"})
    node.make_pod("kag-db-1", labels={"app": "kag-db"})
    try:
        apply(k, manifest)
        wait_until(lambda: netns_paths() == {pod1["netns"]}, 30, "link in pod 1's namespace")
        pod2 = node.make_pod("kag-web-2", labels={"app": "kag-web"})
        wait_until(lambda: netns_paths() == {pod1["netns"], pod2["netns"]}, 30, "pod 2 linked too")
        wait_app(k, manifest, "Success")
        [prog] = programs_of(node.daemon.socket, "kag-pod-xdp")
        assert len(links_of(node.daemon.socket, prog["program_id"])) == 2
        node.delete_pod("kag-web-1")
        wait_until(lambda: netns_paths() == {pod2["netns"]}, 30, "pod 1's link removed")
        assert len(links_of(node.daemon.socket, prog["program_id"])) == 1
    finally:
        delete_app(k, manifest)
    wait_until(lambda: gone(k, manifest), 60, "application deleted")


def test_namespaced_bpf_application(k8s_cluster, k8s_node, k8s_agents, obj) -> None:  # noqa: F811
    node = k8s_node("kag-nsapp", {})
    k8s_agents([node])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    pod = node.make_pod("kag-nsapp-pod", labels={"app": "kag-ns"})
    manifest = app("kag-ns-xdp", obj("xdp_stats"), [
        {"name": "xdp_stats", "type": "XDP", "xdp": {"links": [
            {"interfaceSelector": {"interfaces": ["eth0"]}, "priority": 33,
             "networkNamespaces": {"pods": {"matchLabels": {"app": "kag-ns"}}}}]}}],
        namespace="default")
    try:
        apply(k, manifest)
        wait_app(k, manifest, "Success")
        st = state_on(k, manifest, node.name)
        assert st["kind"] == "BpfApplicationState"
        assert st["metadata"]["namespace"] == "default"
        assert st["metadata"]["finalizers"] == [api.AGENT_FINALIZER["BpfApplication"]]
        [link] = st["status"]["programs"][0]["xdp"]["links"]
        assert link["netnsPath"] == pod["netns"] and link["linkStatus"] == "Attached"
    finally:
        delete_app(k, manifest)
    wait_until(lambda: gone(k, manifest), 60, "application deleted")
    assert node_clean(node.daemon.socket, node.daemon.bpffs)


def test_operator_finalizer_and_deletion_protocol(k8s_cluster, k8s_node,
                                                  k8s_agents, obj) -> None:  # noqa: F811
    """The application keeps the operator's finalizer until every agent has
    released its State; with an agent down the deletion waits (DeleteError)
    and completes when it comes back."""
    a, b = k8s_node("kag-del-a", {}), k8s_node("kag-del-b", {})
    [agent_a, _agent_b, _op] = k8s_agents([a, b])
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    manifest = xdp_app("kag-deletion", obj("xdp_stats"), "xdp_stats", priority=50)
    apply(k, manifest)
    wait_app(k, manifest, "Success")
    obj_ = k.get(api.CLUSTER_APP, "kag-deletion")
    assert api.OPERATOR_FINALIZER in obj_["metadata"]["finalizers"]
    agent_a.kill()
    delete_app(k, manifest)
    wait_app(k, manifest, "DeleteError")
    assert _loaded_on(a, "kag-deletion") == 1  # nobody unloaded node a's copy
    assert _loaded_on(b, "kag-deletion") == 0
    agent_a.start()
    wait_until(lambda: gone(k, manifest), 60, "application deleted")
    for node in (a, b):
        wait_until(lambda n=node: node_clean(n.daemon.socket, n.daemon.bpffs), 30, "clean")
