"""Private: ctypes bindings to libbpf.so.1 and libc, UAPI structs, and the
one errno translation helper. Only `bpfman.kernel` may import this package
(the plugin import contract forbids it elsewhere)."""
