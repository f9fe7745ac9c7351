"""pybpfman on Kubernetes: the per-node agent and the cluster operator."""
