"""The announcement's demo on a real API server and two simulated nodes, each
with its own daemon and agent, and the cluster operator:

1. an XDP counter application at priority 55 on every node's primary
   interface counts packets;
2. an xdp-pass application at priority 50 with ``proceedOn: [Drop]`` runs
   first and stops the chain: counting stops on every node;
3. re-applied at priority 60, the counter runs first again: counting resumes;
4. deleting both leaves no program, link, pin or dispatcher on any node.
"""

from __future__ import annotations

from pathlib import Path

from agent_support import (
    apply,
    bpf_object,
    delete_app,
    demo_count,
    doc_manifests,
    gone,
    k8s_agents,  # noqa: F401 - a fixture
    kube,
    node_clean,
    ping,
    state_on,
    wait_app,
    wait_until,
)


def _priorities(k, manifest, nodes) -> set[int]:
    out = set()
    for node in nodes:
        st = state_on(k, manifest, node.name)
        for prog in ((st or {}).get("status") or {}).get("programs") or []:
            for link in (prog.get("xdp") or {}).get("links") or []:
                if link.get("linkStatus") == "Attached":
                    out.add(link["priority"])
    return out


def test_announcement_demo(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                           tmp_path: Path) -> None:
    nodes = [k8s_node("kag-demo-a", {"role": "demo"}), k8s_node("kag-demo-b", {"role": "demo"})]
    k8s_agents(nodes, operator=True)
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    # The manifests exactly as docs/kubernetes.md shows them.
    counter, xdp_pass = doc_manifests("The demo", {
        f"{name}.bpf.o": bpf_object(name, tmp_path) for name in ("xdp_stats", "xdp_pass")})
    assert counter["metadata"]["name"] == "go-xdp-counter-example"
    assert xdp_pass["spec"]["programs"][0]["xdp"]["links"][0]["priority"] == 50
    try:
        apply(k, counter)
        wait_app(k, counter, "Success")
        for node in nodes:
            before = demo_count(node.daemon.socket)
            ping(node, 5)
            assert demo_count(node.daemon.socket) >= before + 5, node.name

        apply(k, xdp_pass)
        wait_app(k, xdp_pass, "Success")
        for node in nodes:
            before = demo_count(node.daemon.socket)
            ping(node, 5)  # xdp_pass passes: the ping still works, the counter never sees it
            assert demo_count(node.daemon.socket) == before, node.name

        xdp_pass["spec"]["programs"][0]["xdp"]["links"][0]["priority"] = 60
        apply(k, xdp_pass)
        wait_until(lambda: _priorities(k, xdp_pass, nodes) == {60}, 60,
                   "xdp-pass re-attached at priority 60 on every node")
        wait_app(k, xdp_pass, "Success")
        for node in nodes:
            before = demo_count(node.daemon.socket)
            ping(node, 5)
            assert demo_count(node.daemon.socket) >= before + 5, node.name
    finally:
        delete_app(k, xdp_pass)
        delete_app(k, counter)
    wait_until(lambda: gone(k, counter) and gone(k, xdp_pass), 60,
               "both applications and their States deleted")
    for node in nodes:
        wait_until(lambda n=node: node_clean(n.daemon.socket, n.daemon.bpffs), 30,
                   f"{node.name} clean")
