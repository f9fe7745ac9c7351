"""The tracepoint program type for pybpfman (a built-in plugin)."""
