"""The netfilter program type for pybpfman (a built-in plugin)."""
