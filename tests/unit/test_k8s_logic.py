"""The agent's and operator's pure logic: label selectors, link expansion,
the load request, State and application conditions."""

from __future__ import annotations

import json
import uuid

import pytest

from bpfman_operator import api, expand, status
from bpfman_operator.resolvers import FileResolver
from bpfman_operator.selectors import SelectorError, matches, to_query

LABELS = {"kubernetes.io/hostname": "n1", "zone": "a", "tier": "edge"}


@pytest.mark.parametrize(("selector", "expected"), [
    ({}, True),
    (None, False),
    ({"matchLabels": {"zone": "a"}}, True),
    ({"matchLabels": {"zone": "b"}}, False),
    ({"matchLabels": {"zone": "a", "tier": "edge"}}, True),
    ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}, True),
    ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}, False),
    ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}, True),
    ({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
    ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, False),
    ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, True),
    ({"matchLabels": {"zone": "a"},
      "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
])
def test_selector_semantics(selector: dict | None, expected: bool) -> None:
    assert matches(selector, LABELS) is expected


@pytest.mark.parametrize("expr", [
    {"key": "zone", "operator": "In"},
    {"key": "zone", "operator": "Exists", "values": ["a"]},
    {"key": "zone", "operator": "Gt", "values": ["1"]},
])
def test_malformed_selector_is_refused(expr: dict) -> None:
    with pytest.raises(SelectorError):
        matches({"matchExpressions": [expr]}, LABELS)


def test_selector_as_query() -> None:
    sel = {"matchLabels": {"zone": "a"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["edge", "core"]},
        {"key": "gpu", "operator": "DoesNotExist"}]}
    assert to_query(sel) == "zone=a,tier in (edge,core),!gpu"


def _pod(ns: str, name: str, labels: dict) -> dict:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels},
            "status": {"phase": "Running"}}


def _node(**kw: object) -> expand.NodeFacts:
    defaults: dict = {"name": "n1", "labels": LABELS, "internal_ips": ["10.9.0.2"],
                      "netns": "/run/netns/node-n1",
                      "primary_interface": lambda ips: "veth-n1" if "10.9.0.2" in ips else None,
                      "interfaces": lambda netns: ["lo", "eth0", "eth1", "veth9"]}
    defaults.update(kw)
    return expand.NodeFacts(**defaults)


def test_xdp_primary_interface_defaults_priority_and_proceed_on() -> None:
    prog = {"name": "xdp_stats", "type": "XDP",
            "xdp": {"links": [{"interfaceSelector": {"primaryNodeInterface": True}}]}}
    [plan] = expand.expand_program(prog, _node())
    assert plan.params == {"iface": "veth-n1", "priority": 1000,
                           "proceed_on": ["pass", "dispatcher_return"],
                           "netns": "/run/netns/node-n1"}
    assert plan.fields == {"interfaceName": "veth-n1", "priority": 1000,
                           "proceedOn": ["Pass", "DispatcherReturn"]}


def test_primary_interface_missing_is_an_expand_error() -> None:
    prog = {"name": "xdp_stats", "type": "XDP",
            "xdp": {"links": [{"interfaceSelector": {"primaryNodeInterface": True}}]}}
    with pytest.raises(expand.ExpandError, match="InternalIP"):
        expand.expand_program(prog, _node(internal_ips=["10.1.1.1"]))


def test_tc_explicit_interfaces_direction_and_proceed_on() -> None:
    prog = {"name": "stats", "type": "TC", "tc": {"links": [
        {"interfaceSelector": {"interfaces": ["eth0", "eth1"]}, "direction": "Egress",
         "priority": 5, "proceedOn": ["UnSpec", "Pipe", "DispatcherReturn"]}]}}
    plans = expand.expand_program(prog, _node(netns=None))
    assert [p.params for p in plans] == [
        {"iface": i, "direction": "egress", "priority": 5,
         "proceed_on": ["unspec", "pipe", "dispatcher_return"]} for i in ("eth0", "eth1")]
    assert plans[0].fields["direction"] == "Egress"


def test_tcx_has_no_proceed_on_and_needs_a_direction() -> None:
    prog = {"name": "stats", "type": "TCX", "tcx": {"links": [
        {"interfaceSelector": {"interfaces": ["eth0"]}, "direction": "Ingress", "priority": 7}]}}
    [plan] = expand.expand_program(prog, _node(netns=None))
    assert plan.params == {"iface": "eth0", "direction": "ingress", "priority": 7}
    prog["tcx"]["links"][0].pop("direction")
    with pytest.raises(expand.ExpandError, match="direction"):
        expand.expand_program(prog, _node())


def test_network_namespaces_by_pod_selector() -> None:
    pods = [(_pod("web", "a", {"app": "web"}), expand.PodTarget("web", "a", "/proc/11/ns/net")),
            (_pod("web", "b", {"app": "db"}), expand.PodTarget("web", "b", "/proc/12/ns/net")),
            (_pod("other", "c", {"app": "web"}), expand.PodTarget("other", "c",
                                                                 "/proc/13/ns/net")),
            (_pod("web", "d", {"app": "web"}), expand.PodTarget("web", "d", None))]
    prog = {"name": "xdp_stats", "type": "XDP", "xdp": {"links": [
        {"interfaceSelector": {"interfaces": ["eth0"]}, "priority": 10,
         "networkNamespaces": {"pods": {"matchLabels": {"app": "web"}}}}]}}
    cluster = expand.expand_program(prog, _node(pods=pods))
    assert [p.params["netns"] for p in cluster] == ["/proc/13/ns/net", "/proc/11/ns/net"]
    assert cluster[1].fields["netnsPath"] == "/proc/11/ns/net"
    # A BpfApplication only sees pods of its own namespace.
    namespaced = expand.expand_program(prog, _node(pods=pods), app_namespace="web")
    assert [p.params["netns"] for p in namespaced] == ["/proc/11/ns/net"]
    # A cluster application may name the namespace.
    prog["xdp"]["links"][0]["networkNamespaces"]["namespace"] = "other"
    assert [p.params["netns"] for p in expand.expand_program(prog, _node(pods=pods))] == [
        "/proc/13/ns/net"]


def test_interface_discovery_filters() -> None:
    prog = {"name": "xdp_stats", "type": "XDP", "xdp": {"links": [
        {"interfaceSelector": {"interfacesDiscoveryConfig": {
            "interfaceAutoDiscovery": True, "allowedInterfaces": ["/eth[0-9]/", "veth9"],
            "excludeInterfaces": ["eth1"]}}}]}}
    assert [p.params["iface"] for p in expand.expand_program(prog, _node())] == ["eth0", "veth9"]
    prog["xdp"]["links"][0]["interfaceSelector"]["interfacesDiscoveryConfig"] = {
        "interfaceAutoDiscovery": True}
    assert [p.params["iface"] for p in expand.expand_program(prog, _node())] == [
        "eth0", "eth1", "veth9"]


def test_uprobe_containers_one_link_per_container() -> None:
    pods = [(_pod("app", "p1", {"app": "x"}),
             expand.PodTarget("app", "p1", None, {"main": 100, "sidecar": 101}))]
    prog = {"name": "malloc_probe", "type": "UProbe", "uprobe": {"links": [
        {"target": "libc", "function": "malloc",
         "containers": {"pods": {"matchLabels": {"app": "x"}}, "containerNames": ["main"]}}]}}
    [plan] = expand.expand_program(prog, _node(pods=pods))
    assert plan.params == {"target": "libc", "fn_name": "malloc", "container_pid": 100}
    assert plan.fields["containerPid"] == 100
    del prog["uprobe"]["links"][0]["containers"]["containerNames"]
    assert len(expand.expand_program(prog, _node(pods=pods))) == 2


def test_probe_and_tracepoint_links() -> None:
    node = _node()
    assert [p.params for p in expand.expand_program(
        {"name": "kp", "type": "KProbe", "kprobe": {"links": [
            {"function": "do_unlinkat", "offset": 0}]}}, node)] == [
        {"fn_name": "do_unlinkat", "offset": 0}]
    assert [p.params for p in expand.expand_program(
        {"name": "krp", "type": "KRetProbe", "kretprobe": {"links": [
            {"function": "do_unlinkat"}]}}, node)] == [{"fn_name": "do_unlinkat"}]
    assert [p.params for p in expand.expand_program(
        {"name": "tp", "type": "TracePoint", "tracepoint": {"links": [
            {"name": "syscalls/sys_enter_openat"}]}}, node)] == [
        {"tracepoint": "syscalls/sys_enter_openat"}]
    assert [p.params for p in expand.expand_program(
        {"name": "fe", "type": "FEntry", "fentry": {"function": "do_unlinkat",
                                                    "links": [{"mode": "Attach"}]}}, node)] == [{}]
    # links: null (upstream's _no_links samples) is no link at all.
    assert expand.expand_program({"name": "kp", "type": "KProbe",
                                  "kprobe": {"links": None}}, node) == []


def test_link_uuid_is_stable_per_state_program_and_attach_point() -> None:
    state = str(uuid.uuid4())
    a = expand.LinkPlan("xdp", {"iface": "eth0", "priority": 5}, {})
    b = expand.LinkPlan("xdp", {"priority": 5, "iface": "eth0"}, {})
    c = expand.LinkPlan("xdp", {"iface": "eth0", "priority": 6}, {})
    assert a.uuid(state, "p") == b.uuid(state, "p")
    assert a.uuid(state, "p") != c.uuid(state, "p")
    assert a.uuid(state, "p") != a.uuid(state, "q")
    assert a.uuid(state, "p") != a.uuid(str(uuid.uuid4()), "p")


def test_load_request_one_call_for_all_programs() -> None:
    spec = {"byteCode": {"image": {"url": "quay.io/bpfman-bytecode/go-xdp-counter:latest",
                                   "imagePullPolicy": "Always"}},
            "globalData": {"GLOBAL_u8": [1], "GLOBAL_u32": "DQwLCg=="},
            "programs": [{"name": "xdp_stats", "type": "XDP", "xdp": {"links": []}},
                         {"name": "fentry_test", "type": "FEntry",
                          "fentry": {"function": "do_unlinkat"}}]}
    meta = {api.META_UUID: "u", api.META_PROGRAM_NAME: "app"}
    req = expand.load_request(spec, meta, ("user", "pw"))
    assert req == {
        "image": {"url": "quay.io/bpfman-bytecode/go-xdp-counter:latest",
                  "pull_policy": "Always", "username": "user", "password": "pw"},
        "programs": [{"name": "xdp_stats", "type": "xdp"},
                     {"name": "fentry_test", "type": "fentry", "attach_func": "do_unlinkat"}],
        "global_data": {"GLOBAL_u8": "01", "GLOBAL_u32": "0d0c0b0a"},
        "metadata": meta}
    assert expand.load_request({"byteCode": {"path": "/x.o"}, "programs": []}, meta)["path"] == \
        "/x.o"


@pytest.mark.parametrize("bad", [[256], ["a"], "not base64!", 7])
def test_bad_global_data(bad: object) -> None:
    with pytest.raises(expand.SpecError, match="globalData"):
        expand.global_data_hex({"G": bad})


def test_state_condition_from_load_and_link_statuses() -> None:
    ok = [{"programLinkStatus": "Success"}]
    assert status.state_condition_type(api.LOAD_SUCCESS, ok) == "Success"
    assert status.state_condition_type(api.LOAD_SUCCESS, [{"programLinkStatus": "Error"}]) == \
        "Error"
    assert status.state_condition_type(api.LOAD_ERROR, ok) == "Error"
    assert status.state_condition_type(api.UNLOAD_ERROR, ok) == "UnloadError"
    assert status.state_condition_type(api.UNLOAD_SUCCESS, ok) == "Unloaded"
    assert status.state_condition_type(api.NOT_SELECTED, []) == "Success"
    assert status.state_condition_type(api.NOT_LOADED, []) == "Pending"
    assert status.state_condition_type(api.PROGRAM_LIST_CHANGED, ok) == \
        "ProgramListChangedError"


def test_reasons_are_valid_kubernetes_reasons() -> None:
    import re
    reason = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    for ctype in [*api.STATE_CONDITIONS, *api.APP_CONDITIONS]:
        assert reason.match(status.condition(
            ctype, table={**api.STATE_CONDITIONS, **api.APP_CONDITIONS})["reason"])


def test_program_link_status() -> None:
    assert status.program_link_status([]) == "Success"
    assert status.program_link_status([
        {"shouldAttach": True, "linkStatus": "Attached"},
        {"shouldAttach": False, "linkStatus": "NotAttached"}]) == "Success"
    assert status.program_link_status([{"shouldAttach": True, "linkStatus": "AttachError"}]) == \
        "Error"
    assert status.program_link_status([{"shouldAttach": False, "linkStatus": "DetachError"}]) == \
        "Error"


def test_single_condition_keeps_transition_time_when_unchanged() -> None:
    old = [{"type": "Success", "status": "True", "reason": "Success", "message": "m",
            "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    assert status.single_condition(old, status.condition("Success", "m")) == old
    assert status.single_condition(old, status.condition("Error", "x"))[0]["type"] == "Error"


def _state(name: str, node: str, ctype: str | None, finalizer: bool = True) -> dict:
    meta: dict = {"name": name, "labels": {api.LABEL_HOSTNAME: node}}
    if finalizer:
        meta["finalizers"] = [api.AGENT_FINALIZER["ClusterBpfApplication"]]
    st: dict = {"node": node}
    if ctype:
        st["conditions"] = [{"type": ctype}]
    return {"metadata": meta, "status": st}


def test_aggregation() -> None:
    app = {"kind": "ClusterBpfApplication", "metadata": {"name": "a"}}
    nodes = ["n1", "n2"]
    assert status.aggregate(app, [_state("s1", "n1", "Success")], nodes)[0] == "Pending"
    both = [_state("s1", "n1", "Success"), _state("s2", "n2", "Success")]
    assert status.aggregate(app, both, nodes) == ("Success", api.APP_CONDITIONS["Success"])
    err = [_state("s1", "n1", "Error"), _state("s2", "n2", "Pending")]
    ctype, message = status.aggregate(app, err, nodes)
    assert ctype == "Error" and "['s1']" in message
    assert status.aggregate(app, [_state("s1", "n1", "Pending"),
                                  _state("s2", "n2", None)], nodes)[0] == "Pending"
    for failed in ("UnloadError", "ProgramListChangedError"):
        assert status.aggregate(app, [_state("s1", "n1", failed),
                                      _state("s2", "n2", "Success")], nodes)[0] == "Error"


def test_aggregation_while_deleting() -> None:
    app = {"kind": "ClusterBpfApplication",
           "metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    held = [_state("s1", "n1", "Unloaded", finalizer=False), _state("s2", "n2", "Success")]
    ctype, message = status.aggregate(app, held, ["n1", "n2"])
    assert ctype == "DeleteError" and "['s2']" in message
    released = [_state("s1", "n1", "Unloaded", False), _state("s2", "n2", "Unloaded", False)]
    assert status.aggregate(app, released, ["n1", "n2"]) is None


def test_initial_status() -> None:
    st = status.initial_status("n1", [{"name": "xdp_stats", "type": "XDP"}])
    assert st["appLoadStatus"] == "NotLoaded" and st["updateCount"] == 1
    assert st["programs"] == [{"name": "xdp_stats", "type": "XDP",
                               "programLinkStatus": "Pending", "xdp": {"links": []}}]
    assert st["conditions"][0]["reason"] == "Pending"


def test_test_resolver_reads_the_pods_file(tmp_path) -> None:
    path = tmp_path / "pods.json"
    resolver = FileResolver(str(path))
    pod = {"metadata": {"namespace": "ns", "name": "p"}}
    assert resolver.resolve(pod).netns is None
    path.write_text(json.dumps({"ns/p": {"node": "n1", "netns": "/run/netns/x",
                                         "containers": {"main": [43, 42], "idle": []},
                                         "pids": [42, 43]}}))
    target = resolver.resolve(pod)
    assert (target.netns, dict(target.containers)) == ("/run/netns/x", {"main": 42})
    path.write_text(json.dumps({"ns/p": {"netns": "/run/netns/y", "pids": [7]}}))
    assert dict(resolver.resolve(pod).containers) == {"c0": 7}
