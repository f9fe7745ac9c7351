"""Conditions: a State's single condition from its load and link statuses, and
the application's single condition aggregated from every node's State.

Pure functions over plain dicts (the objects as the API server returns them).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bpfman_operator import api

FAILED_STATE_CONDITIONS = frozenset({"Error", "ProgramListChangedError", "UnloadError"})


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(ctype: str, message: str | None = None, *, generation: int | None = None,
              table: Mapping[str, str] = api.STATE_CONDITIONS) -> dict[str, Any]:
    """A metav1.Condition whose reason is its type, status "True"."""
    cond: dict[str, Any] = {"type": ctype, "status": "True", "reason": ctype,
                            "message": message or table[ctype], "lastTransitionTime": now()}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def single_condition(current: Sequence[Mapping[str, Any]] | None,
                     new: dict[str, Any]) -> list[dict[str, Any]]:
    """The one-element condition list after `new`: the current condition is
    kept as it is (its transition time too) when type and message are the same."""
    if current and len(current) == 1:
        old = current[0]
        if (old.get("type"), old.get("message")) == (new["type"], new["message"]):
            return [dict(old)]
    return [new]


def state_condition_type(app_load_status: str, programs: Iterable[Mapping[str, Any]]) -> str:
    """Upstream's checkProgramStatus: which condition a State's status earns."""
    if app_load_status in (api.LOAD_ERROR, api.UPDATE_ATTACH_INFO_ERROR):
        return "Error"
    if app_load_status == api.UNLOAD_ERROR:
        return "UnloadError"
    if app_load_status == api.UNLOAD_SUCCESS:
        return "Unloaded"
    if app_load_status == api.PROGRAM_LIST_CHANGED:
        return "ProgramListChangedError"
    if app_load_status == api.NOT_SELECTED:
        return "Success"
    if app_load_status == api.NOT_LOADED:
        return "Pending"
    if any(p.get("programLinkStatus") != api.LINKS_SUCCESS for p in programs):
        return "Error"
    return "Success"


def program_link_status(links: Iterable[Mapping[str, Any]]) -> str:
    """Success when every link is where it should be, else Error."""
    for link in links:
        want = api.ATTACHED if link.get("shouldAttach") else api.NOT_ATTACHED
        if link.get("linkStatus") != want:
            return api.LINKS_ERROR
    return api.LINKS_SUCCESS


def initial_status(node: str, spec_programs: Iterable[Mapping[str, Any]],
                   update_count: int = 0) -> dict[str, Any]:
    """A new State's first status: NotLoaded, every program Pending."""
    programs = []
    for prog in spec_programs:
        member = api.PROGRAM_TYPES.get(prog.get("type", ""), ("", ""))[1]
        entry: dict[str, Any] = {"name": prog["name"], "type": prog.get("type"),
                                 "programLinkStatus": api.LINKS_PENDING}
        if member:
            entry[member] = {"links": []}
        programs.append(entry)
    return {"node": node, "updateCount": update_count + 1, "appLoadStatus": api.NOT_LOADED,
            "programs": programs, "conditions": [condition("Pending")]}


def state_condition_of(state: Mapping[str, Any]) -> str | None:
    conds = (state.get("status") or {}).get("conditions") or []
    return conds[0].get("type") if conds else None


def aggregate(app: Mapping[str, Any], states: Iterable[Mapping[str, Any]],
              node_names: Iterable[str]) -> tuple[str, str] | None:
    """The application's (condition type, message) from its States, as
    upstream's operator decides it; None when the application is being deleted
    and no State holds an agent finalizer any more (deletion may complete).
    """
    kind = app.get("kind", api.CLUSTER_APP.kind)
    agent_finalizer = api.AGENT_FINALIZER.get(kind, "")
    state_kind = api.STATE_OF.get(kind, api.CLUSTER_STATE).kind
    states = list(states)
    if (app.get("metadata") or {}).get("deletionTimestamp"):
        holding = sorted(s["metadata"]["name"] for s in states
                         if agent_finalizer in (s["metadata"].get("finalizers") or []))
        if not holding:
            return None
        return ("DeleteError",
                f"{kind} deletion failed or is pending on the following {state_kind} "
                f"objects: {holding}")
    with_state = {(s.get("status") or {}).get("node")
                  or (s["metadata"].get("labels") or {}).get(api.LABEL_HOSTNAME)
                  for s in states}
    missing = sorted(set(node_names) - with_state)
    failed, pending = [], []
    for s in states:
        ctype = state_condition_of(s)
        if ctype in FAILED_STATE_CONDITIONS:
            failed.append(s["metadata"]["name"])
        elif ctype in (None, "Pending"):
            # No condition yet: the agent created the State and has not written
            # its first status (upstream counts this as a failure for a moment).
            pending.append(s["metadata"]["name"])
    if failed:
        return ("Error", f"{kind} Reconciliation failed on the following {state_kind} "
                         f"objects: {sorted(failed)}")
    if missing or pending:
        waiting = sorted(pending) + [f"node {n} (no {state_kind} yet)" for n in missing]
        return ("Pending", f"{api.APP_CONDITIONS['Pending']}: {waiting}")
    return ("Success", api.APP_CONDITIONS["Success"])
