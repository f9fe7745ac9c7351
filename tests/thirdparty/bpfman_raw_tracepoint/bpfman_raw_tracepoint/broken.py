"""A plugin that fails to import, registered on purpose: the daemon must
report it in daemon.info and keep serving."""

raise ImportError("this plugin is broken on purpose (pybpfman test suite)")
