#!/usr/bin/env python3
"""A local pybpfman-on-Kubernetes playground, the same one the k8s tests use.

    sudo .venv/bin/python scripts/k8s-local-cluster.py --nodes 2

starts etcd and kube-apiserver on 127.0.0.1 (binaries from scripts/k8s-control-plane.sh),
installs the CRDs, RBAC and admission policy, makes N simulated nodes (a Node object, a
network namespace with eth0 holding its InternalIP, its own pybpfman daemon and
bpfman-agent) and runs bpfman-operator. It prints how to use it and runs until Ctrl-C,
then removes everything it made (processes, namespaces, pins, state).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "k8s"))

from cluster import SimNode, bin_dir, binaries_missing, running_cluster


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=2, help="simulated nodes (default 2)")
    ap.add_argument("--no-agents", action="store_true",
                    help="do not start bpfman-agent and bpfman-operator")
    ap.add_argument("--kubeconfig", default="/tmp/pybpfman-kubeconfig",
                    help="where to write the admin kubeconfig")
    args = ap.parse_args()
    if missing := binaries_missing():
        sys.exit(f"{', '.join(missing)} missing in {bin_dir()}: "
                 "run bash scripts/k8s-control-plane.sh")
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces and the daemons need it)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running_cluster(f"k8slocal{os.getpid()}") as cluster:
        nodes = [SimNode(cluster, f"node-{i}").setup() for i in range(1, args.nodes + 1)]
        if not args.no_agents:
            for node in nodes:
                node.start_agent()
            cluster.start_operator()
        kubeconfig = Path(args.kubeconfig)
        kubeconfig.write_text(cluster.kubeconfig_for("admin").read_text())
        kubeconfig.chmod(0o600)
        print(f"API server {cluster.url} (kube-apiserver v1.36.3); admin kubeconfig: {kubeconfig}")
        print(f"  export KUBECONFIG={kubeconfig} PATH={cluster.bin}:$PATH")
        print("  kubectl apply -f <your ClusterBpfApplication>; kubectl get bpfman")
        for node in nodes:
            print(f"{node.name}: InternalIP {node.ip} on eth0 in netns {node.netns}; "
                  f"daemon socket {node.daemon.socket}")
            print(f"  traffic:  ip netns exec {node.ext_netns} ping {node.ip}")
            print(f"  programs: bpfman --socket {node.daemon.socket} list")
        print(f"logs under {cluster.root}; Ctrl-C removes everything", flush=True)
        try:
            while not stop.wait(1):
                for proc in [cluster.operator, *(n.agent for n in nodes)]:
                    if proc is not None and not proc.running() and proc.popen is not None:
                        print(f"{proc.name} exited; its log: {proc.log}", flush=True)
                        proc.popen = None
        finally:
            kubeconfig.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
