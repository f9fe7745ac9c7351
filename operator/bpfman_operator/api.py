"""The bpfman.io/v1alpha1 vocabulary: kinds, labels, finalizers, conditions and
the mapping of CRD enums onto the daemon's JSON-RPC names.

Names, reasons and messages are upstream bpfman-operator's, except that every
condition reason is a valid Kubernetes reason (upstream's "Unload Error"
becomes ``UnloadError``).
"""

from __future__ import annotations

from typing import Final

import attrs

GROUP: Final = "bpfman.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"


@attrs.frozen
class Kind:
    """A resource the agent or operator reads or writes."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CLUSTER_APP = Kind(GROUP, VERSION, "ClusterBpfApplication", "clusterbpfapplications", False)
NS_APP = Kind(GROUP, VERSION, "BpfApplication", "bpfapplications", True)
CLUSTER_STATE = Kind(GROUP, VERSION, "ClusterBpfApplicationState",
                     "clusterbpfapplicationstates", False)
NS_STATE = Kind(GROUP, VERSION, "BpfApplicationState", "bpfapplicationstates", True)
NODE = Kind("", "v1", "Node", "nodes", False)
POD = Kind("", "v1", "Pod", "pods", True)
SECRET = Kind("", "v1", "Secret", "secrets", True)

#: The State kind of each application kind.
STATE_OF = {CLUSTER_APP.kind: CLUSTER_STATE, NS_APP.kind: NS_STATE}

LABEL_OWNER: Final = "bpfman.io/ownedByProgram"
LABEL_HOSTNAME: Final = "kubernetes.io/hostname"
META_UUID: Final = "bpfman.io/uuid"
META_PROGRAM_NAME: Final = "bpfman.io/ProgramName"

OPERATOR_FINALIZER: Final = "bpfman.io.operator/finalizer"
AGENT_FINALIZER = {
    CLUSTER_APP.kind: "bpfman.io.clbpfapplicationcontroller/finalizer",
    NS_APP.kind: "bpfman.io.nsbpfapplicationcontroller/finalizer",
}

# State.status.appLoadStatus
NOT_LOADED, LOAD_SUCCESS, LOAD_ERROR = "NotLoaded", "LoadSuccess", "LoadError"
NOT_SELECTED, UNLOAD_SUCCESS, UNLOAD_ERROR = "NotSelected", "UnloadSuccess", "UnloadError"
PROGRAM_LIST_CHANGED = "ProgramListChangedError"

# programs[].programLinkStatus
LINKS_PENDING, LINKS_SUCCESS, LINKS_ERROR = "Pending", "Success", "Error"
UPDATE_ATTACH_INFO_ERROR = "UpdateAttachInfoError"

# links[].linkStatus
ATTACHED, NOT_ATTACHED = "Attached", "NotAttached"
ATTACH_ERROR, DETACH_ERROR = "AttachError", "DetachError"

#: State condition type -> (reason, message); the type doubles as the reason.
STATE_CONDITIONS: Final = {
    "Pending": "Not yet complete",
    "Success": "The BPF application has been successfully loaded and attached",
    "Error": "An error has occurred",
    "UnloadError": "Unload failed for one or more programs",
    "Unloaded": "The application has been successfully unloaded",
    "ProgramListChangedError": "The list of programs of an application cannot change "
                               "after it is created",
}

#: Application condition type -> default message (the operator keeps one).
APP_CONDITIONS: Final = {
    "Pending": "Waiting for Bpf Application Object to be reconciled on all nodes",
    "Success": "BPF application configuration successfully applied on all nodes",
    "Error": "An error has occurred on one or more nodes",
    "DeleteError": "Deletion failed on one or more nodes",
}

#: CRD program type -> (daemon type, the spec/status member holding its links).
PROGRAM_TYPES: Final = {
    "XDP": ("xdp", "xdp"),
    "TC": ("tc", "tc"),
    "TCX": ("tcx", "tcx"),
    "TracePoint": ("tracepoint", "tracepoint"),
    "KProbe": ("kprobe", "kprobe"),
    "KRetProbe": ("kretprobe", "kretprobe"),
    "UProbe": ("uprobe", "uprobe"),
    "URetProbe": ("uretprobe", "uretprobe"),
    "FEntry": ("fentry", "fentry"),
    "FExit": ("fexit", "fexit"),
}

XDP_PROCEED_ON: Final = {
    "Aborted": "aborted", "Drop": "drop", "Pass": "pass", "TX": "tx",
    "ReDirect": "redirect", "DispatcherReturn": "dispatcher_return",
}
# Upstream's enum spells UnSpec; its agent only knows Unspec. Both work here.
TC_PROCEED_ON: Final = {
    "UnSpec": "unspec", "Unspec": "unspec", "OK": "ok", "ReClassify": "reclassify",
    "Shot": "shot", "Pipe": "pipe", "Stolen": "stolen", "Queued": "queued",
    "Repeat": "repeat", "ReDirect": "redirect", "Trap": "trap",
    "DispatcherReturn": "dispatcher_return",
}
XDP_DEFAULT_PROCEED_ON: Final = ("Pass", "DispatcherReturn")
TC_DEFAULT_PROCEED_ON: Final = ("Pipe", "DispatcherReturn")
DIRECTIONS: Final = {"Ingress": "ingress", "Egress": "egress"}
#: A link without a priority runs last (upstream's agent makes it concrete).
DEFAULT_PRIORITY: Final = 1000

PULL_POLICIES: Final = {"Always": "Always", "IfNotPresent": "IfNotPresent", "Never": "Never"}
