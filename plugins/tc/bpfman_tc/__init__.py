"""The tc and tcx program types for pybpfman (a built-in plugin package)."""
