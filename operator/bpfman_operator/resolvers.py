"""Pod resolvers: which network namespace and which processes a Running pod
on this node has, as paths and pids the node's daemon can use.

- `ProcResolver` (the default on a cluster): scans ``/proc`` of the host
  (the agent runs with ``hostPID``) for processes whose cgroup names the pod's
  UID, as both the cgroupfs and the systemd cgroup drivers of the kubelet
  write it (``pod<uid>`` / ``pod<uid with _>``), and maps the container ids in
  the pod's ``status.containerStatuses`` onto container names. No container
  runtime socket is needed and any runtime works.
- `FileResolver`: reads a JSON file (``BPFMAN_AGENT_TEST_PODS``) that the
  tests keep: ``{"NAMESPACE/POD": {"node": ..., "netns": PATH,
  "containers": {CONTAINER: [PID, ...]}, "pids": [PID, ...]}}``, re-read
  when it changes (a bare ``pids`` list names containers c0, c1, ...).

Select one with ``BPFMAN_AGENT_RESOLVER`` (``proc`` or ``test``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Protocol

from bpfman_operator.expand import PodTarget


class PodResolver(Protocol):
    def resolve(self, pod: Mapping[str, Any]) -> PodTarget:
        """The pod's network namespace path (None when unknown) and its
        containers' host pids (missing ones left out)."""
        ...


def _meta(pod: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = pod.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or "", meta.get("uid") or ""


class FileResolver:
    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._data: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with open(self.path) as f:
                text = f.read()
            self._data = json.loads(text) if text.strip() else {}
            self._stamp = stamp
        return self._data

    def resolve(self, pod: Mapping[str, Any]) -> PodTarget:
        namespace, name, _uid = _meta(pod)
        entry = self._load().get(f"{namespace}/{name}") or {}
        containers: dict[str, int] = {}
        named = entry.get("containers")
        if isinstance(named, dict):
            for cname, pids in named.items():
                pids = pids if isinstance(pids, list) else [pids]
                if pids:
                    containers[str(cname)] = min(int(p) for p in pids)  # the container's init
        else:
            pids = entry.get("pids") or []
            if isinstance(pids, dict):
                containers = {str(k): int(v) for k, v in pids.items()}
            else:
                containers = {f"c{i}": int(pid) for i, pid in enumerate(pids)}
        return PodTarget(namespace, name, entry.get("netns"), containers)


_CONTAINER_ID = re.compile(r"([0-9a-f]{64})")


class ProcResolver:
    def __init__(self, proc: str = "/proc", daemon_proc: str | None = None) -> None:
        self.proc = proc
        # Where the daemon sees the host's /proc (the netns path it must open).
        self.daemon_proc = daemon_proc or proc

    def resolve(self, pod: Mapping[str, Any]) -> PodTarget:
        namespace, name, uid = _meta(pod)
        ids: dict[str, str] = {}
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            cid = (cs.get("containerID") or "").rpartition("://")[2]
            if cid:
                ids[cid] = cs.get("name", "")
        pod_marks = {f"pod{uid}", f"pod{uid.replace('-', '_')}"} if uid else set()
        containers: dict[str, int] = {}
        netns = None
        for entry in os.listdir(self.proc):
            if not entry.isdigit():
                continue
            try:
                with open(f"{self.proc}/{entry}/cgroup") as f:
                    cgroup = f.read()
            except OSError:
                continue
            if not any(mark in cgroup for mark in pod_marks):
                continue
            pid = int(entry)
            for cid in _CONTAINER_ID.findall(cgroup):
                cname = ids.get(cid)
                if cname and (cname not in containers or pid < containers[cname]):
                    containers[cname] = pid  # the lowest pid: the container's init
            if netns is None or (containers and pid == min(containers.values())):
                netns = f"{self.daemon_proc}/{pid}/ns/net"
        return PodTarget(namespace, name, netns, containers)


def from_env(env: Mapping[str, str] | None = None) -> PodResolver:
    env = os.environ if env is None else env
    kind = env.get("BPFMAN_AGENT_RESOLVER", "proc")
    if kind == "test":
        return FileResolver(env["BPFMAN_AGENT_TEST_PODS"])
    if kind == "proc":
        return ProcResolver(env.get("BPFMAN_AGENT_HOST_PROC", "/proc"),
                            env.get("BPFMAN_AGENT_DAEMON_PROC"))
    raise ValueError(f"BPFMAN_AGENT_RESOLVER: unknown resolver {kind!r} (proc or test)")
