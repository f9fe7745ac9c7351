"""operator/deploy against the real apiserver: the kustomization renders, every object
passes a server-side dry run, and the RBAC it grants is the least the agent and the
operator need (checked with SubjectAccessReviews, not by reading the YAML)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from cluster import DEPLOY, Cluster

AGENT = "system:serviceaccount:bpfman:bpfman-agent"
OPERATOR = "system:serviceaccount:bpfman:bpfman-operator"


def _rendered(k8s_cluster: Cluster) -> list[dict[str, Any]]:
    out = k8s_cluster.kubectl("kustomize", str(DEPLOY)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_kustomization_renders_everything(k8s_cluster: Cluster) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in _rendered(k8s_cluster))
    assert kinds == sorted([
        "ClusterRole/bpfman-agent", "ClusterRole/bpfman-operator",
        "ClusterRoleBinding/bpfman-agent", "ClusterRoleBinding/bpfman-operator",
        "ConfigMap/bpfman-config",
        "CustomResourceDefinition/bpfapplications.bpfman.io",
        "CustomResourceDefinition/bpfapplicationstates.bpfman.io",
        "CustomResourceDefinition/clusterbpfapplications.bpfman.io",
        "CustomResourceDefinition/clusterbpfapplicationstates.bpfman.io",
        "DaemonSet/bpfman-daemon", "Deployment/bpfman-operator", "Namespace/bpfman",
        "ServiceAccount/bpfman-agent", "ServiceAccount/bpfman-operator",
        "ValidatingAdmissionPolicy/bpfman-agent-own-node-states",
        "ValidatingAdmissionPolicyBinding/bpfman-agent-own-node-states"])


def test_server_side_dry_run(k8s_cluster: Cluster) -> None:
    proc = k8s_cluster.kubectl("apply", "--dry-run=server", "-k", str(DEPLOY))
    lines = proc.stdout.splitlines()
    assert len(lines) == 16 and all("(server dry run)" in line for line in lines), proc.stdout
    # Nothing was created by the dry run.
    r = k8s_cluster.request("GET", "/apis/apps/v1/namespaces/bpfman/daemonsets/bpfman-daemon")
    assert r.status_code == 404


def test_daemonset_shares_the_socket_and_host_namespaces(k8s_cluster: Cluster) -> None:
    [ds] = [d for d in _rendered(k8s_cluster) if d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] and pod["hostPID"] and pod["serviceAccountName"] == "bpfman-agent"
    daemon, agent = pod["containers"]
    assert daemon["securityContext"]["privileged"] is True
    assert agent["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert not agent["securityContext"]["allowPrivilegeEscalation"]
    sock = {m["mountPath"] for c in (daemon, agent) for m in c["volumeMounts"]
            if m["name"] == "bpfman-sock"}
    assert sock == {"/run/bpfman-sock"}
    assert "/run/bpfman-sock/bpfman.sock" in daemon["command"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["BPFMAN_SOCKET"]["value"] == "/run/bpfman-sock/bpfman.sock"
    assert env["KUBE_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    [runtime] = [m for m in daemon["volumeMounts"] if m["name"] == "bpfman-runtime"]
    assert runtime["mountPropagation"] == "Bidirectional"  # pins outlive the container
    assert all(c["image"] == "localhost/pybpfman:0.1.0" for c in pod["containers"])


# (user, verb, group, resource, subresource, namespace, allowed)
ACCESS = [
    (AGENT, "watch", "bpfman.io", "clusterbpfapplications", "", "", True),
    (AGENT, "list", "bpfman.io", "bpfapplications", "", "", True),
    (AGENT, "update", "bpfman.io", "clusterbpfapplications", "", "", False),
    (AGENT, "patch", "bpfman.io", "bpfapplications", "status", "x", False),
    (AGENT, "create", "bpfman.io", "clusterbpfapplicationstates", "", "", True),
    (AGENT, "patch", "bpfman.io", "bpfapplicationstates", "status", "x", True),
    (AGENT, "get", "", "secrets", "", "x", True),
    (AGENT, "list", "", "secrets", "", "x", False),
    (AGENT, "watch", "", "pods", "", "", True),
    (AGENT, "update", "", "nodes", "", "", False),
    (AGENT, "create", "", "events", "", "x", False),
    (AGENT, "create", "", "pods", "", "x", False),
    (OPERATOR, "update", "bpfman.io", "clusterbpfapplications", "", "", True),
    (OPERATOR, "update", "bpfman.io", "bpfapplications", "status", "x", True),
    (OPERATOR, "delete", "bpfman.io", "clusterbpfapplicationstates", "", "", True),
    (OPERATOR, "create", "bpfman.io", "bpfapplicationstates", "", "x", False),
    (OPERATOR, "update", "bpfman.io", "clusterbpfapplicationstates", "status", "", False),
    (OPERATOR, "list", "", "nodes", "", "", True),
    (OPERATOR, "get", "", "pods", "", "x", False),
    (OPERATOR, "get", "", "secrets", "", "x", False),
    (OPERATOR, "create", "bpfman.io", "clusterbpfapplications", "", "", False),
]


@pytest.mark.parametrize("case", ACCESS, ids=lambda c: "-".join(
    p for p in (c[0].rsplit(":", 1)[1], c[1], c[3], c[4]) if p))
def test_least_privilege(k8s_cluster: Cluster, case: tuple) -> None:
    user, verb, group, resource, sub, ns, allowed = case
    attrs = {"verb": verb, "group": group, "resource": resource}
    if sub:
        attrs["subresource"] = sub
    if ns:
        attrs["namespace"] = ns
    r = k8s_cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", json={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts",
                                          "system:serviceaccounts:bpfman", "system:authenticated"],
                 "resourceAttributes": attrs}})
    r.raise_for_status()
    assert r.json()["status"].get("allowed", False) is allowed, r.json()["status"]
