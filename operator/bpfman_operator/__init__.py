"""pybpfman on Kubernetes: the per-node agent and the cluster operator.

Both are clients: the agent of its node's pybpfman daemon (through the public
JSON-RPC client, `bpfman.client`) and of the API server; the operator of the
API server only. The API (bpfman.io/v1alpha1) is upstream bpfman-operator's.
"""
