"""The uprobe and uretprobe program types for pybpfman (a built-in plugin)."""
