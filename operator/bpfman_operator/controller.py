"""bpfman-operator: cluster-wide. Puts its finalizer on every application,
aggregates the per-node States into the application's single condition
(Pending / Success / Error / DeleteError), and completes a deletion only after
every node's agent released its State: then it deletes the States itself (no
garbage collector has to run) and removes its finalizer.

It never talks to a daemon. Environment: KUBECONFIG (else the pod's service
account), BPFMAN_OPERATOR_RESYNC (seconds; default 60).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any

from bpfman_operator import api, status
from bpfman_operator.kube import ApiError, Client, Informer, LevelTriggered, load_config

log = logging.getLogger("bpfman_operator.operator")


class Operator(LevelTriggered):
    log = log

    def __init__(self, kube: Client, *, resync: float = 60.0) -> None:
        super().__init__(resync)
        self.kube = kube
        self.retry_after_failure = 1.0
        on_change = self.trigger.set
        self.apps = {api.CLUSTER_APP.kind: Informer(kube, api.CLUSTER_APP, on_change),
                     api.NS_APP.kind: Informer(kube, api.NS_APP, on_change)}
        self.states = {api.CLUSTER_APP.kind: Informer(kube, api.CLUSTER_STATE, on_change),
                       api.NS_APP.kind: Informer(kube, api.NS_STATE, on_change)}
        self.nodes = Informer(kube, api.NODE, on_change)
        self.informers = [*self.apps.values(), *self.states.values(), self.nodes]

    def reconcile_all(self) -> float | None:
        """One pass; 1 s when something must be retried soon, else None."""
        retry = False
        node_names = {n["metadata"]["name"] for n in self.nodes.items()}
        for kind, apps in self.apps.items():
            states = self.states[kind].items()
            by_owner: dict[str, list[dict[str, Any]]] = {}
            for st in states:
                for ref in st["metadata"].get("ownerReferences") or []:
                    by_owner.setdefault(ref.get("uid", ""), []).append(st)
            app_uids = set()
            for app in apps.items():
                app_uids.add(app["metadata"]["uid"])
                try:
                    self.reconcile_app(kind, app, by_owner.get(app["metadata"]["uid"], []),
                                       node_names)
                except ApiError as exc:
                    log.info("%s %s: %s; retrying", kind, app["metadata"]["name"], exc)
                    retry = True
            for st in states:
                try:
                    self._tidy_state(kind, st, app_uids, node_names)
                except ApiError as exc:
                    log.info("%s: %s; retrying", st["metadata"]["name"], exc)
                    retry = True
        return 1.0 if retry else None

    def reconcile_app(self, kind: str, app: dict[str, Any], states: list[dict[str, Any]],
                      node_names: set[str]) -> None:
        meta = app["metadata"]
        finalizers = meta.get("finalizers") or []
        deleting = bool(meta.get("deletionTimestamp"))
        if not deleting and api.OPERATOR_FINALIZER not in finalizers:
            self._patch_app(kind, app, {"metadata": {
                "finalizers": [*finalizers, api.OPERATOR_FINALIZER],
                "resourceVersion": meta["resourceVersion"]}})
            return  # its update event brings it back
        result = status.aggregate(app, states, node_names)
        if result is None:
            # Every agent released its State: delete them, then let the app go.
            for st in states:
                self._delete_state(kind, st)
            if api.OPERATOR_FINALIZER in finalizers:
                self._patch_app(kind, app, {"metadata": {
                    "finalizers": [f for f in finalizers if f != api.OPERATOR_FINALIZER] or None,
                    "resourceVersion": meta["resourceVersion"]}})
            return
        ctype, message = result
        current = (app.get("status") or {}).get("conditions") or []
        new = status.condition(ctype, message, generation=meta.get("generation"),
                               table=api.APP_CONDITIONS)
        conditions = status.single_condition(current, new)
        if conditions[0].get("observedGeneration") != meta.get("generation"):
            conditions = [{**conditions[0], "observedGeneration": meta.get("generation")}]
        if conditions != current:
            written = self.kube.patch(_app_kind(kind), meta["name"],
                                      {"status": {"conditions": conditions}},
                                      meta.get("namespace"), status=True)
            self.apps[kind].store(written)

    def _tidy_state(self, kind: str, st: Mapping[str, Any], app_uids: set[str],
                    node_names: set[str]) -> None:
        """States nobody will release: those of a deleted Node lose the agent
        finalizer (no agent is left there to do it); those whose application
        is gone and that no agent holds are deleted."""
        meta = st["metadata"]
        finalizer = api.AGENT_FINALIZER[kind]
        node = (meta.get("labels") or {}).get(api.LABEL_HOSTNAME)
        owners = {r.get("uid") for r in meta.get("ownerReferences") or []}
        held = finalizer in (meta.get("finalizers") or [])
        if held and node and node not in node_names:
            log.info("%s: node %s is gone; releasing it", meta["name"], node)
            st = self.kube.patch(api.STATE_OF[kind], meta["name"], {"metadata": {
                "finalizers": [f for f in meta["finalizers"] if f != finalizer] or None,
                "resourceVersion": meta["resourceVersion"]}}, meta.get("namespace"))
            self.states[kind].store(st)
            held = False
        if not held and not owners & app_uids:
            self._delete_state(kind, st)

    def _delete_state(self, kind: str, st: Mapping[str, Any]) -> None:
        meta = st["metadata"]
        if meta.get("deletionTimestamp"):
            return
        self.kube.delete(api.STATE_OF[kind], meta["name"], meta.get("namespace"))

    def _patch_app(self, kind: str, app: Mapping[str, Any], patch: dict[str, Any]) -> None:
        meta = app["metadata"]
        try:
            written = self.kube.patch(_app_kind(kind), meta["name"], patch, meta.get("namespace"))
        except ApiError as exc:
            if exc.code == 404:
                return
            raise
        self.apps[kind].store(written)


def _app_kind(kind: str) -> api.Kind:
    return api.CLUSTER_APP if kind == api.CLUSTER_APP.kind else api.NS_APP


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bpfman-operator", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--log-level", default=os.environ.get("BPFMAN_OPERATOR_LOG", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    op = Operator(Client(load_config(args.kubeconfig)),
                  resync=float(os.environ.get("BPFMAN_OPERATOR_RESYNC", "60")))
    signal.signal(signal.SIGTERM, lambda *_: op.stop())
    signal.signal(signal.SIGINT, lambda *_: op.stop())
    log.info("bpfman-operator started")
    op.run()


__all__ = ["Operator", "main"]
