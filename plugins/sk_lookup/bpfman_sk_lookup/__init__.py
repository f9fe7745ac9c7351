"""The sk_lookup program type for pybpfman (a built-in plugin)."""
