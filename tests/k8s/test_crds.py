"""Our bpfman.io/v1alpha1 CRDs against the real apiserver: upstream's samples apply
unchanged (with upstream's defaults), upstream's State snapshots fit the status schema
without pruning, global data takes both forms, and invalid specs are refused with a
message that names the problem."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import REPO, Cluster

SAMPLES = Path(__file__).parent / "samples"
APP_SAMPLES = sorted(p.name for p in SAMPLES.glob("*.yaml") if not p.stem.endswith("state"))
STATE_SAMPLES = sorted(p.name for p in SAMPLES.glob("*state.yaml"))
API = "/apis/bpfman.io/v1alpha1"


def test_generated_crds_are_current() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "k8s-gen-crds.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _path(obj: dict[str, Any]) -> str:
    plural = obj["kind"].lower() + "s"
    ns = obj["metadata"].get("namespace")
    return f"{API}/namespaces/{ns}/{plural}" if ns else f"{API}/{plural}"


@pytest.mark.parametrize("sample", APP_SAMPLES)
def test_upstream_sample_applies_unchanged(k8s_cluster: Cluster, sample: str) -> None:
    text = (SAMPLES / sample).read_text()
    sent = yaml.safe_load(text)
    if ns := sent["metadata"].get("namespace"):
        k8s_cluster.ensure_namespace(ns)
    k8s_cluster.apply(text)
    try:
        got = k8s_cluster.get(f"{_path(sent)}/{sent['metadata']['name']}")
        spec = got["spec"]
        names = [p["name"] for p in sent["spec"]["programs"]]
        assert [p["name"] for p in spec["programs"]] == names
        if "image" in spec["byteCode"]:
            assert spec["byteCode"]["image"]["imagePullPolicy"] == "IfNotPresent"  # default
        # Global data written as byte lists is stored as written (agents decode both forms).
        assert spec.get("globalData") == sent["spec"].get("globalData")
        for prog in spec["programs"]:
            for link in (prog.get(prog["type"].lower()) or {}).get("links") or []:
                if prog["type"] == "XDP":
                    assert link["proceedOn"] == ["Pass", "DispatcherReturn"]
                if prog["type"] == "TC":
                    assert link["proceedOn"] == ["Pipe", "DispatcherReturn"]
                if prog["type"] in ("KProbe", "UProbe", "URetProbe"):
                    assert link["offset"] == 0
    finally:
        k8s_cluster.kubectl("delete", "-f", "-", "--wait=false", input=text)


@pytest.mark.parametrize("sample", STATE_SAMPLES)
def test_upstream_state_snapshot_fits_status_schema(k8s_cluster: Cluster, sample: str) -> None:
    """Everything upstream's agent writes survives our status schema (nothing pruned)."""
    snap = yaml.safe_load((SAMPLES / sample).read_text())
    meta = snap["metadata"]
    if ns := meta.get("namespace"):
        k8s_cluster.ensure_namespace(ns)
    name = f"snap-{meta['name']}"[:63]
    body = {"apiVersion": snap["apiVersion"], "kind": snap["kind"],
            "metadata": {"name": name, "labels": meta["labels"],
                         **({"namespace": ns} if ns else {})}}
    path = _path(snap)
    r = k8s_cluster.request("POST", path, json=body)
    assert r.status_code == 201, r.text
    try:
        obj = r.json()
        obj["status"] = snap["status"]
        r = k8s_cluster.request("PUT", f"{path}/{name}/status", json=obj)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == snap["status"]
        table = k8s_cluster.kubectl("get", snap["kind"].lower(), name,
                                    *(["-n", ns] if ns else []), "--no-headers").stdout
        assert snap["status"]["node"] in table and "Success" in table
    finally:
        k8s_cluster.request("DELETE", f"{path}/{name}")


def _app(name: str, programs: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "bpfman.io/v1alpha1", "kind": "ClusterBpfApplication",
            "metadata": {"name": name},
            "spec": {"nodeSelector": {}, "byteCode": {"path": "/opt/progs/x.o"},
                     "programs": programs, **spec}}


XDP = {"name": "xdp_pass", "type": "XDP",
       "xdp": {"links": [{"interfaceSelector": {"primaryNodeInterface": True},
                          "priority": 55}]}}


def test_global_data_takes_base64_and_byte_lists(k8s_cluster: Cluster) -> None:
    app = _app("crd-globals", [XDP], globalData={"as_b64": "AQIDBA==", "as_list": [1, 2, 3, 4]})
    k8s_cluster.apply(app)
    try:
        got = k8s_cluster.get(f"{API}/clusterbpfapplications/crd-globals")
        assert got["spec"]["globalData"] == {"as_b64": "AQIDBA==", "as_list": [1, 2, 3, 4]}
    finally:
        k8s_cluster.kubectl("delete", "clusterbpfapplication", "crd-globals", "--wait=false")


def test_printer_columns(k8s_cluster: Cluster) -> None:
    app = _app("crd-columns", [XDP])
    app["spec"]["nodeSelector"] = {"matchLabels": {"zone": "a"}}
    k8s_cluster.apply(app)
    try:
        out = k8s_cluster.kubectl("get", "clusterbpfapplications", "crd-columns").stdout
        header, row = out.splitlines()[:2]
        assert header.split() == ["NAME", "NODESELECTOR", "STATUS", "AGE"]
        # Upstream's column reads .spec.nodeselector and is always empty; ours is not.
        assert '"zone":"a"' in row.replace(" ", ""), row
        # `kubectl get bpfman` lists every kind of ours (category).
        assert "crd-columns" in k8s_cluster.kubectl("get", "bpfman").stdout
    finally:
        k8s_cluster.kubectl("delete", "clusterbpfapplication", "crd-columns", "--wait=false")


def _variant(change: Any) -> dict[str, Any]:
    app = _app("crd-invalid", [copy.deepcopy(XDP)])
    change(app)
    return app


def _set(path: str, value: Any) -> Any:
    def change(app: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node: Any = app
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return change


_DELETE = object()
LINK = "spec.programs.0.xdp.links.0"
INVALID = {
    "no-node-selector": (_set("spec.nodeSelector", _DELETE), "spec.nodeSelector: Required value"),
    "no-programs": (_set("spec.programs", []), "spec.programs: Invalid value"),
    "type-without-member": (_set("spec.programs.0.type", "TC"),
                            "tc is required when type is TC, and forbidden otherwise"),
    "unknown-type": (_set("spec.programs.0.type", "Socket"),
                     'spec.programs[0].type: Unsupported value: "Socket"'),
    "priority-too-high": (_set(f"{LINK}.priority", 1001),
                          "spec.programs[0].xdp.links[0].priority: Invalid value: 1001"),
    "bad-proceed-on": (_set(f"{LINK}.proceedOn", ["Pass", "Continue"]),
                       'spec.programs[0].xdp.links[0].proceedOn[1]: Unsupported value: '
                       '"Continue"'),
    "two-interface-selectors": (
        _set(f"{LINK}.interfaceSelector", {"primaryNodeInterface": True, "interfaces": ["eth0"]}),
        "spec.programs[0].xdp.links[0].interfaceSelector: Too many: 2: must have at most 1"),
    "image-and-path": (_set("spec.byteCode", {"path": "/x.o", "image": {"url": "quay.io/a:b"}}),
                       "spec.byteCode: Too many: 2: must have at most 1"),
    "bad-program-name": (_set("spec.programs.0.name", "9x"),
                         'spec.programs[0].name: Invalid value: "9x"'),
    "bad-pull-policy": (_set("spec.byteCode", {"image": {"url": "q.io/a:b",
                                                         "imagePullPolicy": "Sometimes"}}),
                        'spec.byteCode.image.imagePullPolicy: Unsupported value: "Sometimes"'),
    "relative-path": (_set("spec.byteCode.path", "progs/x.o"),
                      'spec.byteCode.path: Invalid value: "progs/x.o"'),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_spec_refused_with_clear_message(k8s_cluster: Cluster, case: str) -> None:
    change, message = INVALID[case]
    proc = k8s_cluster.apply(_variant(change), check=False, extra=("--dry-run=server",))
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


def test_namespaced_kind_limits(k8s_cluster: Cluster) -> None:
    """BpfApplication: only pod-scoped types, and links must name their pods."""
    k8s_cluster.ensure_namespace("crd-ns")
    app = _app("crd-ns-app", [{"name": "kprobe_x", "type": "KProbe",
                               "kprobe": {"links": [{"function": "do_sys_open"}]}}])
    app["kind"], app["metadata"]["namespace"] = "BpfApplication", "crd-ns"
    proc = k8s_cluster.apply(app, check=False, extra=("--dry-run=server",))
    assert 'unknown field "spec.programs[0].kprobe"' in proc.stderr, proc.stderr
    del app["spec"]["programs"][0]["kprobe"]
    proc = k8s_cluster.apply(app, check=False, extra=("--dry-run=server",))
    assert 'spec.programs[0].type: Unsupported value: "KProbe"' in proc.stderr, proc.stderr
    app["spec"]["programs"] = [copy.deepcopy(XDP)]
    proc = k8s_cluster.apply(app, check=False, extra=("--dry-run=server",))
    assert "spec.programs[0].xdp.links[0].networkNamespaces: Required value" in proc.stderr, \
        proc.stderr
    app["spec"]["programs"][0]["xdp"]["links"][0]["networkNamespaces"] = {
        "pods": {"matchLabels": {"app": "x"}}}
    k8s_cluster.apply(app, extra=("--dry-run=server",))


def test_explain_documents_fields(k8s_cluster: Cluster) -> None:
    out = k8s_cluster.kubectl("explain", "clusterbpfapplications.spec.programs.xdp.links").stdout
    assert "priority" in out and "proceedOn" in out and "interfaceSelector" in out
    assert json.loads(k8s_cluster.kubectl("get", "--raw", "/apis/bpfman.io/v1alpha1").stdout)
