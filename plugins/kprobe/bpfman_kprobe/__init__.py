"""The kprobe and kretprobe program types for pybpfman (a built-in plugin)."""
