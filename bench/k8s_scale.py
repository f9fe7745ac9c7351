"""Kubernetes scale: N simulated nodes x M applications on a real API server.

Each node has its own daemon and bpfman-agent; one bpfman-operator runs for
the cluster (tests/k8s/cluster.py builds all of it). Measured:

- apply: from creating M ClusterBpfApplications (each a tracepoint program
  on every node) until every State is Success and every application's
  condition is Success;
- delete: from deleting them until every application and State is gone and
  every node's daemon has no program, link or pin left;
- at rest: each agent's CPU (user+system over a quiet window) and RSS, with
  all M applications applied.

    .venv/bin/python bench/k8s_scale.py [--nodes 10] [--apps 20] [--rest 30] [--json]

Needs root (daemons, network namespaces) and the control-plane binaries
(scripts/k8s-control-plane.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "k8s"))

from agent_support import (  # noqa: E402 - after the path above
    agent_proc,
    app,
    apply,
    bpf_object,
    delete_app,
    kube,
    node_clean,
    operator_proc,
    wait_until,
)
from cluster import SimNode, running_cluster  # noqa: E402

from bpfman_operator import api  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _all_success(k: Any, names: list[str], n_nodes: int) -> bool:
    states = k.list(api.CLUSTER_STATE)["items"]
    ok = [s for s in states if s["metadata"]["labels"].get(api.LABEL_OWNER) in names
          and ((s.get("status") or {}).get("conditions") or [{}])[0].get("type") == "Success"]
    if len(ok) != len(names) * n_nodes:
        return False
    apps = [a for a in k.list(api.CLUSTER_APP)["items"] if a["metadata"]["name"] in names]
    return len(apps) == len(names) and all(
        ((a.get("status") or {}).get("conditions") or [{}])[0].get("type") == "Success"
        for a in apps)


TRACEPOINTS = [f"sys_enter_{name}" for name in (
    "getppid", "getpid", "getuid", "geteuid", "getgid", "getegid", "gettid", "getpgrp",
    "getsid", "getpgid", "getcwd", "getrlimit", "getrusage", "getpriority", "getgroups",
    "getresuid", "getresgid", "getitimer", "getcpu", "getrandom")]


def run(n_nodes: int, n_apps: int, rest: float, work: Path) -> dict[str, Any]:
    obj = bpf_object("bench_tp", work)
    with running_cluster(f"kagb{os.getpid()}") as cluster:
        nodes = [SimNode(cluster, f"kag-bench-{i}", {"bench": "yes"}).setup()
                 for i in range(n_nodes)]
        agents = [agent_proc(n.agent_env(), work / f"agent-{n.name}.log", "info",
                             BPFMAN_AGENT_RESYNC="60").start() for n in nodes]
        op = operator_proc(str(cluster.kubeconfig_for("operator")), work / "operator.log",
                           "info")
        op.start()
        k = kube(str(cluster.kubeconfig_for("admin")))
        names = [f"kag-bench-app-{i:02d}" for i in range(n_apps)]
        # One tracepoint per application: all the simulated nodes share one kernel,
        # which runs at most 64 programs per tracepoint (BPF_TRACE_MAX_PROGS).
        manifests = [app(name, obj, [{"name": "bench_tp", "type": "TracePoint", "tracepoint": {
            "links": [{"name": f"syscalls/{TRACEPOINTS[i % len(TRACEPOINTS)]}"}]}}],
            node_selector={"matchLabels": {"bench": "yes"}}) for i, name in enumerate(names)]
        try:
            time.sleep(2)  # agents synced and idle
            started = time.perf_counter()
            for m in manifests:
                apply(k, m)
            wait_until(lambda: _all_success(k, names, n_nodes), 600, "every State Success",
                       interval=0.2)
            apply_s = time.perf_counter() - started

            time.sleep(3)  # let the last status writes and watch events settle
            before = {a.pid: _cpu_seconds(a.pid) for a in agents}
            time.sleep(rest)
            cpu = [(_cpu_seconds(a.pid) - before[a.pid]) / rest * 100 for a in agents]
            rss = [_rss_mib(a.pid) for a in agents]
            op_rss = _rss_mib(op.pid)

            started = time.perf_counter()
            for m in manifests:
                delete_app(k, m)

            def clean() -> bool:
                left = [a for a in k.list(api.CLUSTER_APP)["items"]
                        if a["metadata"]["name"] in names]
                states = [s for s in k.list(api.CLUSTER_STATE)["items"]
                          if s["metadata"]["labels"].get(api.LABEL_OWNER) in names]
                return not left and not states and all(
                    node_clean(n.daemon.socket, n.daemon.bpffs) for n in nodes)

            wait_until(clean, 600, "every node clean", interval=0.2)
            delete_s = time.perf_counter() - started
        finally:
            for a in [*agents, op]:
                a.stop()
    return {"nodes": n_nodes, "apps": n_apps, "states": n_nodes * n_apps,
            "apply_to_all_success_s": round(apply_s, 2),
            "delete_to_all_clean_s": round(delete_s, 2),
            "agent_cpu_at_rest_pct_mean": round(statistics.mean(cpu), 3),
            "agent_cpu_at_rest_pct_max": round(max(cpu), 3),
            "agent_rss_mib_mean": round(statistics.mean(rss), 1),
            "agent_rss_mib_max": round(max(rss), 1),
            "operator_rss_mib": round(op_rss, 1),
            "rest_window_s": rest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--rest", type=float, default=30.0, help="quiet window for CPU (s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(f"/tmp/kag-bench-{os.getpid()}")
    work.mkdir(parents=True, exist_ok=True)
    result = run(args.nodes, args.apps, args.rest, work)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
