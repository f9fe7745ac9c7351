"""From an application's spec to what the daemon is asked: the one
``program.load`` call for all its programs, and each program's links expanded
into concrete attach points on one node.

Pure: every fact about the node (its InternalIP's interface, its interfaces,
its Running pods and their namespaces or processes) comes in as arguments, so
the logic is tested without a cluster or a kernel.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from bpfman_operator import api
from bpfman_operator.selectors import SelectorError, matches


class ExpandError(ValueError):
    """The spec cannot be turned into attach points on this node (no interface
    holds the node's InternalIP, a malformed selector, ...)."""


class SpecError(ValueError):
    """The spec cannot be loaded (global data that is neither base64 nor bytes,
    an unknown program type)."""


@attrs.frozen
class PodTarget:
    """What a pod resolver found for one Running pod on this node."""

    namespace: str
    name: str
    netns: str | None = None  # the path the daemon opens for the pod's network namespace
    containers: Mapping[str, int] = attrs.field(factory=dict)  # container name -> host pid


@attrs.frozen
class NodeFacts:
    """Everything link expansion needs to know about this node.

    ``netns`` is the node's own network namespace as the daemon should open it
    (None: the daemon's own), used for links without ``networkNamespaces``.
    """

    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict)
    internal_ips: Sequence[str] = ()
    netns: str | None = None
    primary_interface: Callable[[Sequence[str]], str | None] = lambda _ips: None
    interfaces: Callable[[str | None], Sequence[str]] = lambda _netns: ()
    pods: Sequence[tuple[Mapping[str, Any], PodTarget]] = ()  # (Pod object, resolved) pairs


@attrs.frozen
class LinkPlan:
    """One concrete attach point of one program on this node."""

    member: str                     # xdp, tc, ... (the status member)
    params: dict[str, Any]          # program.attach params for the daemon
    fields: dict[str, Any]          # the attach data shown in the State's link

    def uuid(self, state_uid: str, program: str) -> str:
        """A stable id for this attach point of this program of this State:
        an agent killed between an attach and its status write finds the link
        again by this id (upstream draws a random one)."""
        key = json.dumps([program, self.member, self.params], sort_keys=True)
        return str(uuid.uuid5(uuid.UUID(state_uid), key))


def program_type(program: Mapping[str, Any]) -> tuple[str, str]:
    """(daemon type, status member) of a spec program."""
    try:
        return api.PROGRAM_TYPES[program["type"]]
    except KeyError:
        raise SpecError(
            f"program {program.get('name')!r}: unknown type {program.get('type')!r}") from None


def global_data_hex(global_data: Mapping[str, Any] | None) -> dict[str, str]:
    """globalData values as the daemon's hex. The API server stores either a
    base64 string (after a Go client round trip) or the list of byte values
    the manifest had; both mean the same bytes."""
    out = {}
    for name, value in (global_data or {}).items():
        if isinstance(value, str):
            try:
                raw = base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise SpecError(f"globalData {name}: not base64: {exc}") from None
        elif isinstance(value, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in value):
            raw = bytes(value)
        else:
            raise SpecError(f"globalData {name}: neither base64 nor a list of bytes")
        out[name] = raw.hex()
    return out


def load_request(spec: Mapping[str, Any], metadata: Mapping[str, str],
                 credentials: tuple[str, str] | None = None) -> dict[str, Any]:
    """The single ``program.load`` params for every program of an application.

    Raises:
        SpecError: unknown type, bad global data.
    """
    programs = []
    for prog in spec.get("programs") or []:
        daemon_type, member = program_type(prog)
        entry: dict[str, Any] = {"name": prog["name"], "type": daemon_type}
        if daemon_type in ("fentry", "fexit"):
            function = (prog.get(member) or {}).get("function")
            if function:
                entry["attach_func"] = function
        programs.append(entry)
    req: dict[str, Any] = {"programs": programs, "metadata": dict(metadata)}
    byte_code = spec.get("byteCode") or {}
    if "path" in byte_code:
        req["path"] = byte_code["path"]
    elif "image" in byte_code:
        image = byte_code["image"]
        pull = {"url": image["url"],
                "pull_policy": api.PULL_POLICIES.get(image.get("imagePullPolicy") or "",
                                                     "IfNotPresent")}
        if credentials:
            pull["username"], pull["password"] = credentials
        req["image"] = pull
    else:
        raise SpecError("byteCode needs an image or a path")
    data = global_data_hex(spec.get("globalData"))
    if data:
        req["global_data"] = data
    return req


def expand_program(program: Mapping[str, Any], node: NodeFacts,
                   app_namespace: str | None = None) -> list[LinkPlan]:
    """Every concrete attach point of one spec program on `node`, in spec order.

    `app_namespace` is the namespace of a BpfApplication (its pod selectors
    only see pods there); None for a ClusterBpfApplication.

    Raises:
        ExpandError: a link cannot be expanded on this node.
    """
    daemon_type, member = program_type(program)
    links = (program.get(member) or {}).get("links") or []
    plans: list[LinkPlan] = []
    for link in links:
        if daemon_type in ("xdp", "tc", "tcx"):
            plans += _network_links(daemon_type, member, link, node, app_namespace)
        elif daemon_type == "tracepoint":
            plans.append(LinkPlan(member, {"tracepoint": link["name"]}, {"name": link["name"]}))
        elif daemon_type in ("kprobe", "kretprobe"):
            params: dict[str, Any] = {"fn_name": link["function"]}
            fields: dict[str, Any] = {"function": link["function"]}
            if daemon_type == "kprobe":
                params["offset"] = fields["offset"] = int(link.get("offset") or 0)
            plans.append(LinkPlan(member, params, fields))
        elif daemon_type in ("uprobe", "uretprobe"):
            plans += _uprobe_links(member, link, node, app_namespace)
        elif daemon_type in ("fentry", "fexit"):
            plans.append(LinkPlan(member, {}, {"mode": link.get("mode", "Attach")}))
    return _unique(plans)


def _unique(plans: list[LinkPlan]) -> list[LinkPlan]:
    # Two spec links naming the same attach point are one attach point.
    seen: set[str] = set()
    out = []
    for plan in plans:
        key = json.dumps([plan.member, plan.params], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(plan)
    return out


def _interfaces(selector: Mapping[str, Any], node: NodeFacts, netns: str | None) -> list[str]:
    if selector.get("interfaces"):
        return list(selector["interfaces"])
    if selector.get("primaryNodeInterface"):
        iface = node.primary_interface(node.internal_ips)
        if not iface:
            raise ExpandError(
                f"node {node.name}: no interface holds its InternalIP "
                f"{', '.join(node.internal_ips) or '(none)'}")
        return [iface]
    discovery = selector.get("interfacesDiscoveryConfig")
    if discovery is not None:
        if not discovery.get("interfaceAutoDiscovery"):
            return []
        exclude = discovery.get("excludeInterfaces")
        exclude = ["lo"] if exclude is None else exclude
        allowed = discovery.get("allowedInterfaces") or []
        return [i for i in node.interfaces(netns)
                if not _name_in(i, exclude) and (not allowed or _name_in(i, allowed))]
    raise ExpandError("interfaceSelector needs interfaces, primaryNodeInterface "
                      "or interfacesDiscoveryConfig")


def _name_in(name: str, patterns: Sequence[str]) -> bool:
    # "/regex/" entries are regular expressions, as upstream allows.
    for pattern in patterns:
        if len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/"):
            if re.fullmatch(pattern[1:-1], name):
                return True
        elif pattern == name:
            return True
    return False


def _selected_pods(selector: Mapping[str, Any], node: NodeFacts,
                   app_namespace: str | None) -> list[PodTarget]:
    namespace = app_namespace or selector.get("namespace")
    out = []
    for pod, target in node.pods:
        meta = pod.get("metadata") or {}
        if namespace and meta.get("namespace") != namespace:
            continue
        try:
            if matches(selector.get("pods"), meta.get("labels")):
                out.append(target)
        except SelectorError as exc:
            raise ExpandError(str(exc)) from None
    return sorted(out, key=lambda t: (t.namespace, t.name))


def _network_links(daemon_type: str, member: str, link: Mapping[str, Any], node: NodeFacts,
                   app_namespace: str | None) -> list[LinkPlan]:
    priority = link.get("priority")
    priority = api.DEFAULT_PRIORITY if priority is None else int(priority)
    base: dict[str, Any] = {"priority": priority}
    fields: dict[str, Any] = {"priority": priority}
    if daemon_type != "xdp":
        direction = link.get("direction")
        if direction not in api.DIRECTIONS:
            raise ExpandError(f"direction must be Ingress or Egress, not {direction!r}")
        base["direction"], fields["direction"] = api.DIRECTIONS[direction], direction
    if daemon_type in ("xdp", "tc"):
        names, default = ((api.XDP_PROCEED_ON, api.XDP_DEFAULT_PROCEED_ON)
                          if daemon_type == "xdp" else
                          (api.TC_PROCEED_ON, api.TC_DEFAULT_PROCEED_ON))
        proceed_on = link.get("proceedOn")
        proceed_on = list(default) if proceed_on is None else list(proceed_on)
        unknown = [p for p in proceed_on if p not in names]
        if unknown:
            raise ExpandError(f"unknown proceedOn value(s) {unknown}")
        base["proceed_on"] = list(dict.fromkeys(names[p] for p in proceed_on))
        fields["proceedOn"] = proceed_on
    selector = link.get("interfaceSelector") or {}
    ns_selector = link.get("networkNamespaces")
    plans = []
    if ns_selector:
        for target in _selected_pods(ns_selector, node, app_namespace):
            if not target.netns:
                continue  # the resolver could not place this pod (yet)
            for iface in _interfaces(selector, node, target.netns):
                plans.append(LinkPlan(member, {**base, "iface": iface, "netns": target.netns},
                                      {**fields, "interfaceName": iface,
                                       "netnsPath": target.netns}))
    else:
        for iface in _interfaces(selector, node, node.netns):
            params = {**base, "iface": iface}
            if node.netns:
                params["netns"] = node.netns
            plans.append(LinkPlan(member, params, {**fields, "interfaceName": iface}))
    return plans


def _uprobe_links(member: str, link: Mapping[str, Any], node: NodeFacts,
                  app_namespace: str | None) -> list[LinkPlan]:
    params: dict[str, Any] = {"target": link["target"]}
    fields: dict[str, Any] = {"target": link["target"]}
    if link.get("function"):
        params["fn_name"] = fields["function"] = link["function"]
    offset = int(link.get("offset") or 0)
    if offset:
        params["offset"] = offset
    fields["offset"] = offset
    if link.get("pid") is not None:
        params["pid"] = fields["pid"] = int(link["pid"])
    containers = link.get("containers")
    if not containers:
        return [LinkPlan(member, params, fields)]
    wanted = containers.get("containerNames") or []
    plans = []
    for target in _selected_pods(containers, node, app_namespace):
        for cname, pid in sorted(target.containers.items()):
            if wanted and cname not in wanted:
                continue
            plans.append(LinkPlan(member, {**params, "container_pid": pid},
                                  {**fields, "containerPid": pid}))
    return plans
