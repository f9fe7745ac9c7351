"""The fentry and fexit program types for pybpfman (a built-in plugin)."""
