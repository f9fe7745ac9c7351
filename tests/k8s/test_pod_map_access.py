"""Map access for applications in pods (docs/kubernetes.md, "Map access for pods").

The node's daemon has the rule an admin writes for an application's pods: their
uid may list and read only the programs whose ``bpfman.io/ProgramName`` is
that application. The "pod" is a real process running as that uid (65534)
with the node daemon's socket, as a pod with the socket mounted would be: it
finds its program by metadata and reads the demo counter's map, packets
included, and cannot see or read another application's program.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from agent_support import (
    apply,
    bpf_object,
    delete_app,
    k8s_agents,  # noqa: F401 - a fixture
    kube,
    node_clean,
    ping,
    programs_of,
    wait_app,
    wait_until,
    xdp_app,
)

from bpfman.testing import call_as

APP = "go-xdp-counter-example"
POD_RULE = f"""[daemon]
socket_mode = "0666"

[[authorization.rules]]
uids = [65534]
methods = ["program.list", "program.get", "map.list", "map.get", "map.dump"]
program_metadata = {{ "bpfman.io/ProgramName" = "{APP}" }}
"""


def pod_count(node) -> int:
    """What the counter pod does: find its program by metadata, read the map."""
    listed = call_as(node.daemon, "program.list",
                     {"metadata": {"bpfman.io/ProgramName": APP}})["result"]
    [prog] = listed
    reply = call_as(node.daemon, "map.get", {"program_id": prog["program_id"],
                                             "map": "xdp_stats_map",
                                             "key": struct.pack("=I", 2).hex()})
    value = bytes.fromhex(reply["result"]["value"])
    return sum(struct.unpack_from("=QQ", value, off)[0] for off in range(0, len(value), 16))


def test_a_pod_reads_only_its_applications_maps(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                                                tmp_path: Path) -> None:
    node = k8s_node("kag-maps-a", start_daemon=False)
    node.daemon.config.write_text(POD_RULE)
    node.daemon.start()
    for directory in (node.root, node.daemon.root):  # the socket's path, as mounted in a pod
        os.chmod(directory, 0o755)
    k8s_agents([node], operator=True)
    k = kube(k8s_cluster.kubeconfig_for("admin"))
    counter = xdp_app(APP, bpf_object("xdp_stats", tmp_path), "xdp_stats", priority=55)
    other = xdp_app("someone-else", bpf_object("xdp_pass", tmp_path), "pass", priority=60)
    try:
        for manifest in (counter, other):
            apply(k, manifest)
            wait_app(k, manifest, "Success")
        before = pod_count(node)
        ping(node, 5)
        wait_until(lambda: pod_count(node) >= before + 5, 20, "the pod to count the pings")
        # Everything else on the node is invisible and unreadable to the pod.
        [theirs] = programs_of(str(node.daemon.socket), "someone-else")
        seen = call_as(node.daemon, "program.list", {})["result"]
        assert {p["metadata"]["bpfman.io/ProgramName"] for p in seen} == {APP}
        for method, params in [("program.get", {"program_id": theirs["program_id"]}),
                               ("map.list", {"program_id": theirs["program_id"]})]:
            reply = call_as(node.daemon, method, params)
            assert reply.get("code") == 1500, reply
        # Reading is all it may do.
        [mine] = programs_of(str(node.daemon.socket), APP)
        assert call_as(node.daemon, "program.unload",
                       {"program_id": mine["program_id"]}).get("code") == 1500
    finally:
        for manifest in (counter, other):
            delete_app(k, manifest)
        wait_until(lambda: node_clean(str(node.daemon.socket), node.daemon.bpffs), 60,
                   "the node to be clean")
