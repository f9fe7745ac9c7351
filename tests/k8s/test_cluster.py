"""The k8s test harness itself: control plane, CRDs, tokens, RBAC, admission policy,
simulated nodes and pods (infra tests; the agent/operator tests build on these)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cluster import Cluster, SimNode

STATES = "/apis/bpfman.io/v1alpha1/clusterbpfapplicationstates"
AGENT = "system:serviceaccount:bpfman:bpfman-agent"


def _state(name: str, node: str) -> dict:
    return {"apiVersion": "bpfman.io/v1alpha1", "kind": "ClusterBpfApplicationState",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": node,
                                                  "bpfman.io/ownedByProgram": "probe"}}}


def test_control_plane_serves_our_crds(k8s_cluster: Cluster) -> None:
    out = k8s_cluster.kubectl("api-resources", "--api-group=bpfman.io", "-o", "name").stdout
    assert set(out.split()) == {
        "bpfapplications.bpfman.io", "bpfapplicationstates.bpfman.io",
        "clusterbpfapplications.bpfman.io", "clusterbpfapplicationstates.bpfman.io"}
    version = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"
    assert version["clientVersion"]["gitVersion"] == "v1.36.3"


def test_node_agent_identity_and_own_state_only(k8s_cluster: Cluster, k8s_node) -> None:
    a: SimNode = k8s_node("infra-a", {"zone": "a"}, start_daemon=False)
    b: SimNode = k8s_node("infra-b", start_daemon=False)
    # The agent's token is a service-account token bound to its Node.
    who = k8s_cluster.kubectl("auth", "whoami", "-o", "json", user=a.name)
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert info["username"] == AGENT
    assert info["extra"]["authentication.kubernetes.io/node-name"] == [a.name]

    own = k8s_cluster.request("POST", STATES, user=a.name, json=_state("infra-own-a", a.name))
    assert own.status_code == 201, own.text
    try:
        status = {"status": {"node": a.name, "appLoadStatus": "NotLoaded", "updateCount": 1}}
        r = k8s_cluster.request("PATCH", f"{STATES}/infra-own-a/status", user=a.name,
                                json=status, content_type="application/merge-patch+json")
        assert r.status_code == 200, r.text
        # Another node's State: refused by the admission policy with a clear message.
        r = k8s_cluster.request("POST", STATES, user=a.name, json=_state("infra-b-x", b.name))
        assert r.status_code == 403, r.text
        assert f"may only write State objects labelled kubernetes.io/hostname={a.name}" in r.text
        # Nor may b's agent touch a's State (status, relabel or delete).
        r = k8s_cluster.request("PATCH", f"{STATES}/infra-own-a/status", user=b.name,
                                json=status, content_type="application/merge-patch+json")
        assert r.status_code == 403, r.text
        relabel = {"metadata": {"labels": {"kubernetes.io/hostname": b.name}}}
        r = k8s_cluster.request("PATCH", f"{STATES}/infra-own-a", user=a.name, json=relabel,
                                content_type="application/merge-patch+json")
        assert r.status_code == 403, r.text
        r = k8s_cluster.request("DELETE", f"{STATES}/infra-own-a", user=b.name)
        assert r.status_code == 403, r.text
        # The same for the namespaced State kind.
        k8s_cluster.ensure_namespace("infra-ns-states")
        ns_states = "/apis/bpfman.io/v1alpha1/namespaces/infra-ns-states/bpfapplicationstates"
        body = {**_state("infra-ns-b", b.name), "kind": "BpfApplicationState"}
        r = k8s_cluster.request("POST", ns_states, user=a.name, json=body)
        assert r.status_code == 403, r.text
        body = {**_state("infra-ns-a", a.name), "kind": "BpfApplicationState"}
        r = k8s_cluster.request("POST", ns_states, user=a.name, json=body)
        assert r.status_code == 201, r.text
        # Agent credentials without a node name (an unbound token) are refused outright.
        r = k8s_cluster.request("PATCH", f"{STATES}/infra-own-a/status", json=status,
                                content_type="application/merge-patch+json",
                                headers={"Impersonate-User": AGENT,
                                         "Impersonate-Group": "system:serviceaccounts"})
        assert r.status_code == 403, r.text
        assert "bpfman-agent credentials carry no node name" in r.text
        # RBAC: agents never write applications; the operator never writes State status.
        r = k8s_cluster.request("POST", "/apis/bpfman.io/v1alpha1/clusterbpfapplications",
                                user=a.name, json={"apiVersion": "bpfman.io/v1alpha1",
                                                   "kind": "ClusterBpfApplication",
                                                   "metadata": {"name": "infra-nope"}})
        assert r.status_code == 403, r.text
        r = k8s_cluster.request("PATCH", f"{STATES}/infra-own-a/status", user="operator",
                                json=status, content_type="application/merge-patch+json")
        assert r.status_code == 403, r.text
    finally:
        k8s_cluster.request("DELETE", f"{STATES}/infra-own-a")


def test_node_network_and_pods(k8s_cluster: Cluster, k8s_node, make_pod) -> None:
    node: SimNode = k8s_node("infra-net")
    got = k8s_cluster.get(f"/api/v1/nodes/{node.name}")
    assert {"type": "InternalIP", "address": node.ip} in got["status"]["addresses"]
    assert got["metadata"]["labels"]["kubernetes.io/hostname"] == node.name
    # eth0 in the node's netns holds the InternalIP and reaches the outside netns.
    ping = subprocess.run(["ip", "netns", "exec", node.ext_netns, "ping", "-c1", "-W2",
                           node.ip], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert node.daemon.client().call("program.list") == []

    pod = make_pod(node, "infra-pod", "infra-ns", {"app": "infra"},
                   commands={"app": ["sleep", "600"]})
    got = k8s_cluster.get("/api/v1/namespaces/infra-ns/pods/infra-pod")
    assert got["spec"]["nodeName"] == node.name and got["status"]["phase"] == "Running"
    published = json.loads(Path(k8s_cluster.pods_file).read_text())["infra-ns/infra-pod"]
    assert published["node"] == node.name and published["netns"] == pod["netns"]
    [pid] = published["containers"]["app"]
    # The container process runs inside the pod's namespace.
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(pod["netns"]).st_ino
    env = node.agent_env()
    assert env["KUBE_NODE_NAME"] == node.name and Path(env["KUBECONFIG"]).exists()


def test_apiserver_restart_keeps_objects_and_tokens(k8s_cluster: Cluster, k8s_node) -> None:
    node: SimNode = k8s_node("infra-restart", start_daemon=False)
    k8s_cluster.kubeconfig_for(node.name)  # token issued before the restart
    old_pid = k8s_cluster.apiserver.pid if k8s_cluster.apiserver else 0
    k8s_cluster.restart_apiserver(down_seconds=0.5)
    assert k8s_cluster.apiserver is not None and k8s_cluster.apiserver.pid != old_pid
    # etcd kept the objects; the signing key is the same, so issued tokens still work.
    who = json.loads(k8s_cluster.kubectl("auth", "whoami", "-o", "json", user=node.name).stdout)
    assert who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"] == [
        node.name]
    assert k8s_cluster.get(f"/api/v1/nodes/{node.name}")["metadata"]["name"] == node.name
