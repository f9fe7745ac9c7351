"""An agent, under its node's service-account token, can write its own node's
State objects and nothing of another node's (the admission policy keyed on
the State's hostname label), nor the applications themselves."""

from __future__ import annotations

import pytest
from agent_support import (
    apply,
    delete_app,
    gone,
    k8s_agents,  # noqa: F401 - a fixture
    kube,
    state_on,
    wait_app,
    wait_until,
    xdp_app,
)

from bpfman_operator import api
from bpfman_operator.kube import ApiError


def test_agent_cannot_write_another_nodes_state(k8s_cluster, k8s_node, k8s_agents,  # noqa: F811
                                                tmp_path) -> None:
    a, b = k8s_node("kag-rbac-a", {}), k8s_node("kag-rbac-b", {})
    k8s_agents([a, b])
    admin = kube(k8s_cluster.kubeconfig_for("admin"))
    as_a = kube(k8s_cluster.kubeconfig_for(a.name))
    manifest = xdp_app("kag-rbac", str(tmp_path / "none.bpf.o"), "xdp_stats")
    try:
        apply(admin, manifest)
        wait_app(admin, manifest, "Error")  # the load fails (on one node at least)
        # Each agent writes its own State; the second may come a moment later.
        st_a = wait_until(lambda: state_on(admin, manifest, a.name), 30, "node a's State")
        st_b = wait_until(lambda: state_on(admin, manifest, b.name), 30, "node b's State")
        # Its own State: allowed.
        as_a.patch(api.CLUSTER_STATE, st_a["metadata"]["name"],
                   {"metadata": {"annotations": {"kag-test": "mine"}}})
        # Another node's State: refused, in the object and in its status.
        for status in (False, True):
            patch = ({"status": {"node": a.name}} if status
                     else {"metadata": {"annotations": {"kag-test": "theirs"}}})
            with pytest.raises(ApiError) as err:
                as_a.patch(api.CLUSTER_STATE, st_b["metadata"]["name"], patch, status=status)
            assert err.value.code in (403, 422), err.value
        # A State claiming node b, created by a: refused.
        body = {"apiVersion": api.API_VERSION, "kind": api.CLUSTER_STATE.kind,
                "metadata": {"name": "kag-rbac-forged", "labels": {
                    api.LABEL_OWNER: "kag-rbac", api.LABEL_HOSTNAME: b.name}}}
        with pytest.raises(ApiError) as err:
            as_a.create(api.CLUSTER_STATE, body)
        assert err.value.code in (403, 422), err.value
        # The application itself is read-only to agents.
        with pytest.raises(ApiError) as err:
            as_a.patch(api.CLUSTER_APP, "kag-rbac", {"metadata": {"labels": {"x": "y"}}})
        assert err.value.code == 403
    finally:
        delete_app(admin, manifest)
    wait_until(lambda: gone(admin, manifest), 60, "application deleted")
