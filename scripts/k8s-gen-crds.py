#!/usr/bin/env python3
"""Generate operator/crds/*.yaml (bpfman.io/v1alpha1) from the one description below.

    python3 scripts/k8s-gen-crds.py          # rewrite the YAML files
    python3 scripts/k8s-gen-crds.py --check  # exit 1 if a file is stale (a test runs this)

The shape follows upstream bpfman-operator's API (field names, enums, defaults, CEL rules,
status subresource) so that its sample manifests apply unchanged; where we differ it is
said next to the field and in docs/kubernetes.md ("CRDs").
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

GROUP, VERSION = "bpfman.io", "v1alpha1"
OUT = Path(__file__).resolve().parents[1] / "operator" / "crds"
S = dict[str, Any]

# ---------------------------------------------------------------------------------------
# Schema building blocks
# ---------------------------------------------------------------------------------------


def string(desc: str = "", **kw: Any) -> S:
    return {"type": "string", **({"description": desc} if desc else {}), **kw}


def integer(desc: str = "", fmt: str = "int64", **kw: Any) -> S:
    return {"type": "integer", "format": fmt, **({"description": desc} if desc else {}), **kw}


def boolean(desc: str = "", **kw: Any) -> S:
    return {"type": "boolean", **({"description": desc} if desc else {}), **kw}


def array(items: S, desc: str = "", **kw: Any) -> S:
    return {"type": "array", "items": items, **({"description": desc} if desc else {}), **kw}


def obj(props: dict[str, S], desc: str = "", required: tuple[str, ...] = (), **kw: Any) -> S:
    out: S = {"type": "object"}
    if desc:
        out["description"] = desc
    out["properties"] = props
    if required:
        out["required"] = sorted(required)
    out.update(kw)
    return out


def label_selector(desc: str) -> S:
    """metav1.LabelSelector: matchLabels AND matchExpressions; {} selects everything."""
    return obj({
        "matchExpressions": array(obj({
            "key": string("the label key the selector applies to"),
            "operator": string("In, NotIn, Exists or DoesNotExist",
                               enum=["In", "NotIn", "Exists", "DoesNotExist"]),
            "values": array(string(), "values for In and NotIn; empty for Exists and "
                            "DoesNotExist", **{"x-kubernetes-list-type": "atomic"}),
        }, required=("key", "operator")), "requirements, ANDed",
            **{"x-kubernetes-list-type": "atomic"}),
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "label key/value pairs, ANDed"},
    }, desc, **{"x-kubernetes-map-type": "atomic"})


CONDITIONS = array(obj({
    "lastTransitionTime": string("when the condition last changed", format="date-time"),
    "message": string("human-readable details", maxLength=32768),
    "observedGeneration": integer("the .metadata.generation the condition was set for",
                                  minimum=0),
    "reason": string("CamelCase reason", maxLength=1024, minLength=1,
                     pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
    "status": string("True, False or Unknown", enum=["True", "False", "Unknown"]),
    "type": string("condition type", maxLength=316,
                   pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                           r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"),
}, required=("lastTransitionTime", "message", "reason", "status", "type")),
    "a single condition summarising the object (metav1.Condition)",
    **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})

# Upstream's rule for program, function and tracepoint names (unanchored at the end, so
# "syscalls/sys_enter_openat" matches).
NAME_RULES = {"maxLength": 64, "minLength": 1, "pattern": "^[a-zA-Z][a-zA-Z0-9_]+."}
PRIORITY = integer("0 (runs first) to 1000 (last); the agent uses 1000 when absent",
                   fmt="int32", minimum=0, maximum=1000)
DIRECTION = string("Ingress or Egress", enum=["Ingress", "Egress"])
XDP_PROCEED_ON = ["Aborted", "Drop", "Pass", "TX", "ReDirect", "DispatcherReturn"]
TC_PROCEED_ON = ["UnSpec", "OK", "ReClassify", "Shot", "Pipe", "Stolen", "Queued", "Repeat",
                 "ReDirect", "Trap", "DispatcherReturn"]

CLUSTER_TYPES = ["XDP", "TC", "TCX", "FEntry", "FExit", "KProbe", "KRetProbe", "UProbe",
                 "URetProbe", "TracePoint"]
NAMESPACED_TYPES = ["XDP", "TC", "TCX", "UProbe", "URetProbe"]
MEMBER = {t: t.lower() for t in CLUSTER_TYPES}  # XDP -> xdp, TracePoint -> tracepoint


def interface_selector() -> S:
    return obj({
        "interfaces": array(string(), "interface names"),
        "primaryNodeInterface": boolean("the interface holding the Node's InternalIP"),
        "interfacesDiscoveryConfig": obj({
            "interfaceAutoDiscovery": boolean("attach to every discovered interface",
                                              default=False),
            "excludeInterfaces": array(string(), "names never selected", default=["lo"]),
            "allowedInterfaces": array(string(), "names (or /regex/) that may be selected"),
        }, "select the node's interfaces by discovery"),
    }, "exactly one of interfaces, primaryNodeInterface, interfacesDiscoveryConfig",
        minProperties=1, maxProperties=1)


def pod_scope(cluster: bool, what: str, extra: dict[str, S] | None = None) -> S:
    props: dict[str, S] = {"pods": label_selector(f"pods whose {what} are selected")}
    if cluster:
        props["namespace"] = string("the pods' namespace (all namespaces when absent)")
    props.update(extra or {})
    return obj(props, f"{what} of the selected pods on the node", required=("pods",))


def spec_links(t: str, cluster: bool) -> S:
    """The `links` item of program type `t` in an application's spec."""
    netns = pod_scope(cluster, "network namespaces")
    if t == "XDP":
        return obj({"interfaceSelector": interface_selector(), "networkNamespaces": netns,
                    "priority": PRIORITY,
                    "proceedOn": array(string(enum=XDP_PROCEED_ON),
                                       "program return values that continue the chain",
                                       default=["Pass", "DispatcherReturn"])},
                   required=("interfaceSelector",) + (() if cluster else ("networkNamespaces",)))
    if t == "TC":
        return obj({"interfaceSelector": interface_selector(), "networkNamespaces": netns,
                    "direction": DIRECTION, "priority": PRIORITY,
                    "proceedOn": array(string(enum=TC_PROCEED_ON),
                                       "program return values that continue the chain",
                                       default=["Pipe", "DispatcherReturn"])},
                   required=("interfaceSelector", "direction")
                   + (() if cluster else ("networkNamespaces",)))
    if t == "TCX":
        return obj({"interfaceSelector": interface_selector(), "networkNamespaces": netns,
                    "direction": DIRECTION, "priority": PRIORITY},
                   required=("interfaceSelector", "direction")
                   + (() if cluster else ("networkNamespaces",)))
    if t == "TracePoint":
        return obj({"name": string("category/name, e.g. syscalls/sys_enter_openat",
                                   **NAME_RULES)}, required=("name",))
    if t in ("KProbe", "KRetProbe"):
        props = {"function": string("kernel function to attach to", **NAME_RULES)}
        if t == "KProbe":
            props["offset"] = integer("offset from the function's start", default=0)
        return obj(props, required=("function",))
    if t in ("UProbe", "URetProbe"):
        containers = pod_scope(cluster, "containers", {
            "containerNames": array(string(), "only these containers (all when absent)")})
        return obj({"target": string("library name or absolute path of the binary"),
                    "function": string("function to attach to", **NAME_RULES),
                    "offset": integer("offset from the function (or address)", default=0),
                    "pid": integer("only this process", fmt="int32"),
                    "containers": containers},
                   required=("target",) + (() if cluster else ("containers",)))
    # FEntry / FExit: links are just "attach it" (at most one).
    return obj({"mode": string("Attach", enum=["Attach"])}, required=("mode",))


def spec_program(t: str, cluster: bool) -> S:
    member = f"{t} programs: where to attach"
    if t in ("FEntry", "FExit"):
        return obj({"function": string("kernel function, fixed at load time", **NAME_RULES),
                    "links": array(spec_links(t, cluster), maxItems=1)},
                   member, required=("function",))
    return obj({"links": array(spec_links(t, cluster), "attach points (none: load only)")},
               member)


def one_member_rules(types: list[str]) -> list[S]:
    # Upstream's rule set: the member named after `type` is present, every other absent.
    return [{"rule": f"self.type == '{t}' ? has(self.{MEMBER[t]}) : !has(self.{MEMBER[t]})",
             "message": f"{MEMBER[t]} is required when type is {t}, and forbidden otherwise"}
            for t in types]


def app_spec(cluster: bool) -> S:
    types = CLUSTER_TYPES if cluster else NAMESPACED_TYPES
    program = obj({
        "name": string("the program's function name in the object file", **NAME_RULES),
        "type": string("program type", enum=types),
        **{MEMBER[t]: spec_program(t, cluster) for t in types},
    }, required=("name", "type"), **{"x-kubernetes-validations": one_member_rules(types)})
    return obj({
        "nodeSelector": label_selector("nodes to load on; {} selects every node"),
        "byteCode": obj({
            "image": obj({
                "url": string("bytecode image reference", maxLength=525,
                              pattern="[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"),
                "imagePullPolicy": string("Always, Never or IfNotPresent",
                                          enum=["Always", "Never", "IfNotPresent"],
                                          default="IfNotPresent"),
                "imagePullSecret": obj({"name": string(), "namespace": string()},
                                       "a kubernetes.io/dockerconfigjson Secret",
                                       required=("name", "namespace")),
            }, "an OCI bytecode image", required=("url",)),
            "path": string("an object file on the node", pattern=r"^(/[^/\0]+)+/?$"),
        }, "exactly one of image or path", minProperties=1, maxProperties=1),
        # Upstream's schema says base64 string; its samples write arrays of byte values,
        # which a format:byte schema also admits. Agents accept both forms.
        "globalData": {"type": "object", "description": "global variables to set at load "
                       "time: name -> bytes (base64 string or list of byte values)",
                       "additionalProperties": {"type": "string", "format": "byte"}},
        "mapOwnerSelector": label_selector("share maps with this application's programs "
                                           "(not supported yet, as upstream)"),
        "programs": array(program, "the programs, all loaded in one call; the list may not "
                          "change after creation", minItems=1),
    }, "the programs to load and where to attach them",
        required=("byteCode", "nodeSelector", "programs"))


def state_link(t: str, cluster: bool) -> S:
    common: dict[str, S] = {
        "shouldAttach": boolean("whether this attachment should exist"),
        "uuid": string("agent-assigned id of the attach point"),
        "linkId": integer("the daemon's link id once attached"),
        "linkStatus": string("Attached, NotAttached, AttachError or DetachError"),
    }
    req: tuple[str, ...] = ("linkStatus", "shouldAttach", "uuid")
    netns_req = () if cluster else ("netnsPath",)
    if t in ("XDP", "TC", "TCX"):
        props = {"interfaceName": string(), "netnsPath": string(), "priority": PRIORITY}
        req += ("interfaceName", "priority", *netns_req)
        if t != "XDP":
            props["direction"] = DIRECTION
            req += ("direction",)
        if t != "TCX":
            props["proceedOn"] = array(string(enum=XDP_PROCEED_ON if t == "XDP"
                                              else TC_PROCEED_ON))
            req += ("proceedOn",)
    elif t == "TracePoint":
        props, req = {"name": string()}, (*req, "name")
    elif t in ("KProbe", "KRetProbe"):
        props = {"function": string()}
        if t == "KProbe":
            props["offset"] = integer(default=0)
        req += ("function",)
    elif t in ("UProbe", "URetProbe"):
        props = {"target": string(), "function": string(), "offset": integer(default=0),
                 "pid": integer(fmt="int32"), "containerPid": integer(fmt="int32")}
        req += ("target",)
    else:
        props = {}
    return obj({**common, **props}, required=req)


def state_status(cluster: bool) -> S:
    types = CLUSTER_TYPES if cluster else NAMESPACED_TYPES
    members: dict[str, S] = {}
    for t in types:
        links = array(state_link(t, cluster), "concrete attach points and their status",
                      **({"maxItems": 1} if t in ("FEntry", "FExit") else {}))
        if t in ("FEntry", "FExit"):
            members[MEMBER[t]] = obj({"function": string(**NAME_RULES), "links": links},
                                     required=("function",))
        else:
            members[MEMBER[t]] = obj({"links": links})
    program = obj({
        "name": string(), "type": string(enum=types),
        "programId": integer("kernel program id, once loaded"),
        "programLinkStatus": string("Pending, Success, Error or UpdateAttachInfoError"),
        **members,
    }, required=("name", "programLinkStatus", "type"),
        **{"x-kubernetes-validations": one_member_rules(types)})
    return obj({
        "node": string("the node this State belongs to"),
        "updateCount": integer("sequence number of the agent's status writes"),
        "appLoadStatus": string("NotLoaded, LoadSuccess, LoadError, NotSelected, "
                                "UnloadSuccess, UnloadError or ProgramListChangedError"),
        "conditions": CONDITIONS,
        "programs": array(program, "per-program load and link status on this node"),
    }, "what the node's agent did with the application", required=("appLoadStatus", "node",
                                                                     "updateCount"))


# ---------------------------------------------------------------------------------------
# The four kinds
# ---------------------------------------------------------------------------------------

KINDS: list[dict[str, Any]] = [
    {"kind": "ClusterBpfApplication", "plural": "clusterbpfapplications", "cluster": True,
     "app": True, "desc": "eBPF programs for the nodes a label selector picks (any type)"},
    {"kind": "BpfApplication", "plural": "bpfapplications", "cluster": False, "app": True,
     "desc": "eBPF programs attached inside the namespace's own pods (XDP, TC, TCX, uprobes)"},
    {"kind": "ClusterBpfApplicationState", "plural": "clusterbpfapplicationstates",
     "cluster": True, "app": False,
     "desc": "one node's status of a ClusterBpfApplication, written by that node's agent"},
    {"kind": "BpfApplicationState", "plural": "bpfapplicationstates", "cluster": False,
     "app": False, "desc": "one node's status of a BpfApplication, written by its agent"},
]


def columns(app: bool) -> list[S]:
    # Upstream's app column reads .spec.nodeselector (always empty); ours reads the field.
    first = ({"name": "NodeSelector", "type": "string", "jsonPath": ".spec.nodeSelector"}
             if app else {"name": "Node", "type": "string", "jsonPath": ".status.node"})
    return [first,
            {"name": "Status", "type": "string", "jsonPath": ".status.conditions[0].reason"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def crd(k: dict[str, Any]) -> S:
    cluster, app = k["cluster"], k["app"]
    props: dict[str, S] = {
        "apiVersion": string(), "kind": string(), "metadata": {"type": "object"}}
    if app:
        props["spec"] = app_spec(cluster)
        props["status"] = obj({"conditions": CONDITIONS},
                              "the operator's summary over every node")
    else:
        # State objects carry no spec, only status (as upstream).
        props["status"] = state_status(cluster)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{k['plural']}.{GROUP}",
                     "labels": {"app.kubernetes.io/part-of": "pybpfman"}},
        "spec": {
            "group": GROUP, "scope": "Cluster" if cluster else "Namespaced",
            "names": {"kind": k["kind"], "listKind": f"{k['kind']}List",
                      "plural": k["plural"], "singular": k["kind"].lower(),
                      "categories": ["bpfman"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns(app),
                "schema": {"openAPIV3Schema": obj(props, k["desc"])},
            }],
        },
    }


HEADER = "# Generated by scripts/k8s-gen-crds.py from one description: edit that, not this.\n"


def render() -> dict[str, str]:
    files = {f"{GROUP}_{k['plural']}.yaml":
             HEADER + yaml.safe_dump(crd(k), sort_keys=False, width=100) for k in KINDS}
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
         "resources": sorted(files)}, sort_keys=False)
    return files


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale, run scripts/k8s-gen-crds.py: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
