"""The lsm program type for pybpfman (a plugin registered like a third party)."""
