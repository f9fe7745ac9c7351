"""The cgroup program types for pybpfman (a built-in plugin)."""
