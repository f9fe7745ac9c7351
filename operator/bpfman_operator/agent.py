"""bpfman-agent: one per node. Turns ClusterBpfApplication and BpfApplication
objects into calls on this node's pybpfman daemon and reports them in one
ClusterBpfApplicationState / BpfApplicationState per (application, node).

The loop is level-triggered, as upstream's: any change of an application, of
this node's States, of this Node or of a Running pod on it wakes one pass over
every application, which compares what should be on the node with what the
daemon has (found by the metadata the agent loads and attaches with) and
writes a State's status only when it changed. Because the daemon is asked
what it has, an agent killed at any point and restarted adopts what is there:
programs by ``bpfman.io/uuid`` = the State's UID, links by a uuid derived
from the State, the program and the attach point.

Environment: KUBE_NODE_NAME (required), KUBECONFIG (else the pod's service
account), BPFMAN_SOCKET, BPFMAN_AGENT_RESOLVER / BPFMAN_AGENT_TEST_PODS
(resolvers.py), BPFMAN_AGENT_NODE_NETNS (the node's network namespace as a
path, where primaryNodeInterface is looked up and links without
networkNamespaces attach; default: the agent's own), BPFMAN_AGENT_RESYNC
(seconds between passes with nothing happening; default 60).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from bpfman.client import Client as DaemonClient
from bpfman.client import RpcError, default_socket_path
from bpfman_operator import api, expand, netinfo, resolvers, status
from bpfman_operator.kube import ApiError, Client, Informer, LevelTriggered
from bpfman_operator.selectors import SelectorError, matches

log = logging.getLogger("bpfman_operator.agent")

LOAD_RETRY_FIRST, LOAD_RETRY_MAX = 30.0, 300.0


@attrs.define
class LoadFailure:
    """A load that failed: not retried before `retry_at` unless the
    application's generation changes (no hot retry loop)."""

    generation: int
    message: str
    retry_at: float
    delay: float


class Daemon:
    """The node's daemon through its public client; reconnects on demand."""

    def __init__(self, socket_path: str | None) -> None:
        self.socket_path = socket_path
        self._client: DaemonClient | None = None
        self._lock = threading.Lock()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with self._lock:
            for attempt in (1, 2):
                if self._client is None:
                    self._client = DaemonClient(self.socket_path, timeout=300)
                try:
                    return self._client.call(method, params)
                except (ConnectionError, OSError):
                    # The daemon restarted: one reconnect, then give up this pass.
                    self._client.close()
                    self._client = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")


class Agent(LevelTriggered):
    log = log

    def __init__(self, kube: Client, daemon: Daemon, node_name: str, *,
                 resolver: resolvers.PodResolver, node_netns: str | None = None,
                 resync: float = 60.0,
                 interface_holding: Callable[..., str | None] = netinfo.interface_holding,
                 interface_names: Callable[..., list[str]] = netinfo.interface_names) -> None:
        super().__init__(resync)
        self.kube, self.daemon, self.node_name = kube, daemon, node_name
        self.resolver, self.node_netns = resolver, node_netns
        self._interface_holding, self._interface_names = interface_holding, interface_names
        self.load_failures: dict[str, LoadFailure] = {}
        self.passes = 0
        on_change = self.trigger.set
        mine = f"{api.LABEL_HOSTNAME}={node_name}"
        self.apps = {api.CLUSTER_APP.kind: Informer(kube, api.CLUSTER_APP, on_change),
                     api.NS_APP.kind: Informer(kube, api.NS_APP, on_change)}
        self.states = {api.CLUSTER_APP.kind: Informer(kube, api.CLUSTER_STATE, on_change,
                                                      label_selector=mine),
                       api.NS_APP.kind: Informer(kube, api.NS_STATE, on_change,
                                                 label_selector=mine)}
        self.nodes = Informer(kube, api.NODE, on_change,
                              field_selector=f"metadata.name={node_name}")
        self.pods = Informer(kube, api.POD, on_change,
                             field_selector=f"spec.nodeName={node_name}")
        self.informers = [*self.apps.values(), *self.states.values(), self.nodes, self.pods]

    # -- one pass ------------------------------------------------------------
    def reconcile_all(self) -> float | None:
        """One pass over every application. Returns how soon the next pass is
        due (a load to retry, the daemon unreachable), None: at the resync."""
        self.passes += 1
        node = self.nodes.get(self.node_name)
        if node is None:
            log.info("node %s not found: waiting for it", self.node_name)
            return 5.0
        try:
            programs = [p for p in self.daemon.call("program.list", {})
                        if api.META_UUID in (p.get("metadata") or {})]
            links = self.daemon.call("link.list", {})
        except (ConnectionError, OSError) as exc:
            log.warning("daemon unreachable: %s", exc)
            return 2.0
        view = DaemonView(programs, links)
        facts = self._node_facts(node)
        due: float | None = None
        live_uids: set[str] = set()
        for kind, apps in self.apps.items():
            states = self.states[kind]
            by_owner: dict[str, list[dict[str, Any]]] = {}
            for st in states.items():
                for ref in st["metadata"].get("ownerReferences") or []:
                    by_owner.setdefault(ref.get("uid", ""), []).append(st)
            app_uids = set()
            for app in apps.items():
                app_uids.add(app["metadata"]["uid"])
                mine = sorted(by_owner.get(app["metadata"]["uid"], []),
                              key=lambda s: s["metadata"].get("creationTimestamp", ""))
                try:
                    state = self.reconcile_app(kind, app, mine[0] if mine else None, node,
                                               facts, view)
                except (ConnectionError, OSError) as exc:
                    log.warning("daemon unreachable: %s", exc)
                    return 2.0
                except ApiError as exc:
                    log.info("%s %s: API server said %s; retrying",
                             kind, app["metadata"]["name"], exc)
                    due = min(due or 1.0, 1.0)
                    state = mine[0] if mine else None
                if state is not None:
                    live_uids.add(state["metadata"]["uid"])
                for extra in mine[1:]:
                    self._release_orphan(kind, extra, view)
                failure = self.load_failures.get(state["metadata"]["uid"]) if state else None
                if failure is not None:
                    left = max(failure.retry_at - time.monotonic(), 0.5)
                    due = left if due is None else min(due, left)
            for st in states.items():
                refs = {r.get("uid") for r in st["metadata"].get("ownerReferences") or []}
                if not refs & app_uids:
                    self._release_orphan(kind, st, view)
        # Programs of ours no State knows about (their State was removed while
        # this agent was down): nothing will ever report them, so unload them.
        for state_uid, progs in view.by_state().items():
            if state_uid not in live_uids and not self._known_state(state_uid):
                for prog in progs:
                    self._unload(prog["program_id"])
        self.load_failures = {k: v for k, v in self.load_failures.items() if k in live_uids}
        return due

    def _known_state(self, state_uid: str) -> bool:
        return any(st["metadata"]["uid"] == state_uid
                   for inf in self.states.values() for st in inf.items())

    def _node_facts(self, node: Mapping[str, Any]) -> expand.NodeFacts:
        ips = [a["address"] for a in (node.get("status") or {}).get("addresses") or []
               if a.get("type") == "InternalIP"]
        pods = []
        for pod in self.pods.items():
            if (pod.get("status") or {}).get("phase") != "Running":
                continue
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            pods.append((pod, self.resolver.resolve(pod)))
        cache: dict[str, Any] = {}

        def primary(ips_: Any) -> str | None:
            if "primary" not in cache:
                cache["primary"] = self._interface_holding(list(ips_), self.node_netns)
            return cache["primary"]

        def names(netns: str | None) -> list[str]:
            if netns not in cache:
                cache[netns] = self._interface_names(netns)
            return cache[netns]

        return expand.NodeFacts(name=self.node_name,
                                labels=(node.get("metadata") or {}).get("labels") or {},
                                internal_ips=ips, netns=self.node_netns,
                                primary_interface=primary, interfaces=names, pods=pods)

    # -- one application -----------------------------------------------------
    def reconcile_app(self, kind: str, app: dict[str, Any], state: dict[str, Any] | None,
                      node: Mapping[str, Any], facts: expand.NodeFacts,
                      view: DaemonView) -> dict[str, Any] | None:
        meta = app["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        if state is None:
            if deleting:
                return None
            state = self._create_state(kind, app)
        if not state.get("status"):
            state = self._write_status(kind, state, status.initial_status(
                self.node_name, app["spec"].get("programs") or []))
        new = self.desired_status(kind, app, state, facts, view)
        state = self._write_status(kind, state, new)
        cond = status.state_condition_of(state)
        if deleting and cond not in status.FAILED_STATE_CONDITIONS:
            state = self._drop_finalizer(kind, state)
        return state

    def desired_status(self, kind: str, app: Mapping[str, Any], state: Mapping[str, Any],
                       facts: expand.NodeFacts, view: DaemonView) -> dict[str, Any]:
        """The State's status after making the daemon match the spec (the
        daemon calls happen here)."""
        spec = app["spec"]
        meta = app["metadata"]
        old = state.get("status") or {}
        state_uid = state["metadata"]["uid"]
        spec_programs = spec.get("programs") or []
        loaded = view.by_state().get(state_uid, [])
        try:
            selected = matches(spec.get("nodeSelector"), facts.labels)
        except SelectorError:
            selected = False
        removing = bool(meta.get("deletionTimestamp") or state["metadata"].get(
            "deletionTimestamp"))
        if removing or not selected:
            failed = [p["name"] for p in loaded if not self._unload(p["program_id"])]
            if failed:
                load_status = api.UNLOAD_ERROR
                message = f"unload failed for {', '.join(failed)}"
            else:
                load_status = api.UNLOAD_SUCCESS if removing else api.NOT_SELECTED
                message = None
            programs = [_program_entry(p, None, [], api.LINKS_SUCCESS) for p in spec_programs]
            return _status(self.node_name, old, load_status, programs, message)
        spec_names = sorted(p["name"] for p in spec_programs)
        old_names = sorted(p.get("name") for p in old.get("programs") or [])
        if old_names and old_names != spec_names:
            # The program list is immutable (upstream reports it, changes nothing).
            return _status(self.node_name, old, api.PROGRAM_LIST_CHANGED,
                           copy.deepcopy(old.get("programs") or []),
                           f"{api.STATE_CONDITIONS['ProgramListChangedError']}: was "
                           f"{old_names}, now {spec_names}")
        ids = {p["name"]: p["program_id"] for p in loaded}
        if sorted(ids) != spec_names or len(loaded) != len(spec_names):
            # A partial or foreign set (an unload interrupted by a kill): start over.
            for prog in loaded:
                self._unload(prog["program_id"])
            ids, error = self._load(kind, app, state_uid)
            if error is not None:
                programs = [_program_entry(p, None, [], api.LINKS_PENDING) for p in spec_programs]
                return _status(self.node_name, old, api.LOAD_ERROR, programs, error)
            view.forget_links(loaded)
        programs = []
        errors = []
        for prog in spec_programs:
            pid = ids[prog["name"]]
            try:
                plans = expand.expand_program(prog, facts, meta.get("namespace"))
            except expand.ExpandError as exc:
                errors.append(f"{prog['name']}: {exc}")
                programs.append(_program_entry(prog, pid, [], api.UPDATE_ATTACH_INFO_ERROR))
                continue
            links, link_errors = self._sync_links(state_uid, prog["name"], pid, plans, view)
            errors += [f"{prog['name']}: {e}" for e in link_errors]
            programs.append(_program_entry(prog, pid, links, status.program_link_status(links)))
        message = None
        if errors:
            message = f"{api.STATE_CONDITIONS['Error']}: {'; '.join(errors)}"
        return _status(self.node_name, old, api.LOAD_SUCCESS, programs, message)

    def _load(self, kind: str, app: Mapping[str, Any],
              state_uid: str) -> tuple[dict[str, int], str | None]:
        generation = app["metadata"].get("generation", 0)
        failure = self.load_failures.get(state_uid)
        if failure and failure.generation == generation and time.monotonic() < failure.retry_at:
            return {}, failure.message
        metadata = {api.META_UUID: state_uid, api.META_PROGRAM_NAME: app["metadata"]["name"]}
        try:
            req = expand.load_request(app["spec"], metadata, self._credentials(app))
            reply = self.daemon.call("program.load", req)
        except (expand.SpecError, RpcError, ApiError) as exc:
            message = f"load failed: {_describe(exc)}"
            delay = LOAD_RETRY_FIRST if not failure or failure.generation != generation \
                else min(failure.delay * 2, LOAD_RETRY_MAX)
            self.load_failures[state_uid] = LoadFailure(generation, message,
                                                        time.monotonic() + delay, delay)
            log.warning("%s %s: %s (next try in %.0f s)", kind, app["metadata"]["name"],
                        message, delay)
            return {}, message
        self.load_failures.pop(state_uid, None)
        return {p["name"]: p["program_id"] for p in reply["programs"]}, None

    def _credentials(self, app: Mapping[str, Any]) -> tuple[str, str] | None:
        image = (app["spec"].get("byteCode") or {}).get("image") or {}
        ref = image.get("imagePullSecret")
        if not ref:
            return None
        secret = self.kube.get(api.SECRET, ref["name"], ref.get("namespace"))
        raw = base64.b64decode((secret.get("data") or {}).get(".dockerconfigjson", ""))
        auths = (json.loads(raw or b"{}").get("auths")) or {}
        host = image["url"].split("/", 1)[0]
        if "." not in host and ":" not in host and host != "localhost":
            host = "docker.io"
        for key in (host, f"https://{host}", "https://index.docker.io/v1/"
                    if host == "docker.io" else host):
            entry = auths.get(key)
            if entry:
                if entry.get("username"):
                    return entry["username"], entry.get("password", "")
                user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
                return user, password
        return None

    def _sync_links(self, state_uid: str, program: str, program_id: int,
                    plans: list[expand.LinkPlan],
                    view: DaemonView) -> tuple[list[dict[str, Any]], list[str]]:
        """Attach what is planned and missing, detach what is there and not
        planned; the State's links and the errors met."""
        present = {(lk.get("metadata") or {}).get(api.META_UUID): lk
                   for lk in view.links_of(program_id)}
        out, errors = [], []
        wanted = set()
        for plan in plans:
            link_uuid = plan.uuid(state_uid, program)
            wanted.add(link_uuid)
            entry: dict[str, Any] = {"shouldAttach": True, "uuid": link_uuid, **plan.fields}
            if link_uuid in present:
                entry["linkId"] = present[link_uuid]["link_id"]
                entry["linkStatus"] = api.ATTACHED
            else:
                try:
                    reply = self.daemon.call("program.attach", {
                        "program_id": program_id, "params": plan.params,
                        "metadata": {api.META_UUID: link_uuid}})
                    entry["linkId"] = reply["link_id"]
                    entry["linkStatus"] = api.ATTACHED
                except RpcError as exc:
                    entry["linkStatus"] = api.ATTACH_ERROR
                    errors.append(f"attach {_where(plan)}: {_describe(exc)}")
            out.append(entry)
        for link_uuid, lk in present.items():
            if link_uuid in wanted:
                continue
            try:
                self.daemon.call("program.detach", {"link_id": lk["link_id"]})
            except RpcError as exc:
                if exc.code != 1100:  # already gone is detached
                    errors.append(f"detach link {lk['link_id']}: {_describe(exc)}")
                    out.append({"shouldAttach": False, "uuid": link_uuid or "",
                                "linkId": lk["link_id"], "linkStatus": api.DETACH_ERROR})
        return out, errors

    def _unload(self, program_id: int) -> bool:
        try:
            self.daemon.call("program.unload", {"program_id": program_id})
        except RpcError as exc:
            if exc.code != 1100:  # gone already: unloaded
                log.warning("unload %d: %s", program_id, _describe(exc))
                return False
        return True

    # -- writes ----------------------------------------------------------------
    def _create_state(self, kind: str, app: Mapping[str, Any]) -> dict[str, Any]:
        meta = app["metadata"]
        state_kind = api.STATE_OF[kind]
        body: dict[str, Any] = {
            "apiVersion": state_kind.api_version, "kind": state_kind.kind,
            "metadata": {
                "name": f"{meta['name']}-{uuid.uuid4().hex[:8]}",
                "labels": {api.LABEL_OWNER: meta["name"], api.LABEL_HOSTNAME: self.node_name},
                "finalizers": [api.AGENT_FINALIZER[kind]],
                "ownerReferences": [{"apiVersion": app.get("apiVersion", api.API_VERSION),
                                     "kind": kind, "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
        }
        if state_kind.namespaced:
            body["metadata"]["namespace"] = meta["namespace"]
        created = self.kube.create(state_kind, body, meta.get("namespace"))
        self.states[kind].store(created)
        log.info("created %s %s", state_kind.kind, created["metadata"]["name"])
        return created

    def _write_status(self, kind: str, state: dict[str, Any],
                      new: dict[str, Any]) -> dict[str, Any]:
        old = state.get("status") or {}
        if _comparable(old) == _comparable(new):
            return state
        new = {**new, "updateCount": int(old.get("updateCount") or 0) + 1}
        meta = state["metadata"]
        written = self.kube.patch(api.STATE_OF[kind], meta["name"],
                                  {"status": new}, meta.get("namespace"), status=True)
        self.states[kind].store(written)
        return written

    def _drop_finalizer(self, kind: str, state: dict[str, Any]) -> dict[str, Any]:
        meta = state["metadata"]
        finalizer = api.AGENT_FINALIZER[kind]
        if finalizer not in (meta.get("finalizers") or []):
            return state
        rest = [f for f in meta["finalizers"] if f != finalizer]
        try:
            written = self.kube.patch(api.STATE_OF[kind], meta["name"], {"metadata": {
                "finalizers": rest or None, "resourceVersion": meta["resourceVersion"]}},
                meta.get("namespace"))
        except ApiError as exc:
            if exc.code == 404:
                self.states[kind].forget(state)
                return state
            raise
        self.states[kind].store(written)
        return written

    def _release_orphan(self, kind: str, state: dict[str, Any], view: DaemonView) -> None:
        """A State of this node whose application is gone (or a duplicate):
        unload its programs, let go of it and delete it (no garbage collector
        may run)."""
        for prog in view.by_state().get(state["metadata"]["uid"], []):
            self._unload(prog["program_id"])
        view.drop_state(state["metadata"]["uid"])
        try:
            state = self._drop_finalizer(kind, state)
            meta = state["metadata"]
            self.kube.delete(api.STATE_OF[kind], meta["name"], meta.get("namespace"))
            self.states[kind].forget(state)
        except ApiError as exc:
            log.info("releasing %s: %s", state["metadata"]["name"], exc)


class DaemonView:
    """What the daemon had at the start of a pass: our programs grouped by the
    State that loaded them, and links by program."""

    def __init__(self, programs: list[dict[str, Any]], links: list[dict[str, Any]]) -> None:
        self._by_state: dict[str, list[dict[str, Any]]] = {}
        for prog in programs:
            self._by_state.setdefault(prog["metadata"][api.META_UUID], []).append(prog)
        self._links: dict[int, list[dict[str, Any]]] = {}
        for lk in links:
            self._links.setdefault(lk["program_id"], []).append(lk)

    def by_state(self) -> dict[str, list[dict[str, Any]]]:
        return self._by_state

    def links_of(self, program_id: int) -> list[dict[str, Any]]:
        return self._links.get(program_id, [])

    def forget_links(self, programs: list[dict[str, Any]]) -> None:
        for prog in programs:
            self._links.pop(prog["program_id"], None)

    def drop_state(self, state_uid: str) -> None:
        for prog in self._by_state.pop(state_uid, []):
            self._links.pop(prog["program_id"], None)


def _program_entry(prog: Mapping[str, Any], program_id: int | None,
                   links: list[dict[str, Any]], link_status: str) -> dict[str, Any]:
    member = api.PROGRAM_TYPES.get(prog.get("type", ""), ("", ""))[1]
    entry: dict[str, Any] = {"name": prog["name"], "type": prog.get("type"),
                             "programLinkStatus": link_status}
    if program_id is not None:
        entry["programId"] = program_id
    if member:
        body: dict[str, Any] = {"links": links}
        function = (prog.get(member) or {}).get("function")
        if member in ("fentry", "fexit") and function:
            body["function"] = function
        entry[member] = body
    return entry


def _status(node: str, old: Mapping[str, Any], load_status: str,
            programs: list[dict[str, Any]], message: str | None) -> dict[str, Any]:
    ctype = status.state_condition_type(load_status, programs)
    if ctype == "Success":
        message = None
    cond = status.condition(ctype, message)
    return {"node": node, "updateCount": old.get("updateCount", 0),
            "appLoadStatus": load_status, "programs": programs,
            "conditions": status.single_condition(old.get("conditions"), cond)}


def _comparable(st: Mapping[str, Any]) -> Any:
    st = {k: v for k, v in st.items() if k != "updateCount"}
    return json.loads(json.dumps(st, sort_keys=True))


def _describe(exc: Exception) -> str:
    if isinstance(exc, RpcError):
        data = exc.data if isinstance(exc.data, dict) else {}
        kind = data.get("kind")
        return f"{kind}: {exc.message}" if kind else exc.message
    return str(exc)


def _where(plan: expand.LinkPlan) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(plan.params.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bpfman-agent", description=__doc__.split("\n")[0])
    parser.add_argument("--node", default=os.environ.get("KUBE_NODE_NAME"),
                        help="this node's name (default: $KUBE_NODE_NAME)")
    parser.add_argument("--socket", default=None, help="the daemon's socket "
                        "(default: $BPFMAN_SOCKET or /run/bpfman/bpfman.sock)")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--log-level", default=os.environ.get("BPFMAN_AGENT_LOG", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if not args.node:
        parser.error("no node name: set KUBE_NODE_NAME or --node")
    from bpfman_operator.kube import load_config

    agent = Agent(Client(load_config(args.kubeconfig)), Daemon(args.socket), args.node,
                  resolver=resolvers.from_env(),
                  node_netns=os.environ.get("BPFMAN_AGENT_NODE_NETNS") or None,
                  resync=float(os.environ.get("BPFMAN_AGENT_RESYNC", "60")))
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    log.info("bpfman-agent for node %s, daemon %s", args.node,
             agent.daemon.socket_path or default_socket_path())
    agent.run()


__all__ = ["Agent", "Daemon", "main"]
