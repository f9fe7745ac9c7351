"""Serve a whole port range from one listening socket (sk_lookup).

The daemon loads the sk_lookup program and attaches it to this process's
network namespace; we put our own listening socket into the program's
SOCKMAP (an fd means something only in the process that owns it, so no
daemon call can do this for us: we open the pinned map and update it
ourselves, which needs CAP_BPF or root), then answer every connection to any
port of the range on that one socket. On exit we unload the program, which
also detaches it.

    ip netns exec web python3 steer.py --object steer.bpf.o --ports 7000-7099
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from types import FrameType

from bpfman.client import Client, RpcError

_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_libbpf.bpf_obj_get.argtypes = (ctypes.c_char_p,)
_libbpf.bpf_map_update_elem.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_uint64)


def put_socket(map_pin: Path, sock: socket.socket) -> None:
    """target[0] = our socket (by fd, in this process)."""
    map_fd = _libbpf.bpf_obj_get(str(map_pin).encode())
    if map_fd < 0:
        raise OSError(ctypes.get_errno(), f"bpf_obj_get({map_pin})")
    try:
        key, value = ctypes.c_uint32(0), ctypes.c_uint64(sock.fileno())
        if _libbpf.bpf_map_update_elem(map_fd, ctypes.byref(key), ctypes.byref(value), 0):
            raise OSError(ctypes.get_errno(), "bpf_map_update_elem(target)")
    finally:
        os.close(map_fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object", required=True, type=Path, help="compiled steer.bpf.o")
    parser.add_argument("--ports", required=True, help="LO-HI, the local TCP ports to serve")
    parser.add_argument("--count", type=int, default=0, help="stop after N connections")
    parser.add_argument("--socket", help="daemon socket (default $BPFMAN_SOCKET)")
    args = parser.parse_args(argv)
    lo, _, hi = args.ports.partition("-")
    port_lo, port_hi = int(lo), int(hi or lo)

    server = socket.socket()
    server.bind(("127.0.0.1", 0))  # any port: the program brings the range here
    server.listen(64)
    server.settimeout(0.5)
    stop = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    with Client(args.socket) as client:
        [program] = client.call("program.load", {
            "path": str(args.object.resolve()),
            "programs": [{"name": "steer", "type": "sk_lookup"}],
            "global_data": {"port_lo": struct.pack("<H", port_lo).hex(),
                            "port_hi": struct.pack("<H", port_hi).hex()},
            "metadata": {"app": "sk-lookup-steer"},
        })["programs"]
        try:
            put_socket(Path(program["map_pin_dir"]) / "target", server)
            client.call("program.attach", {"program_id": program["program_id"],
                                           "params": {"netns": f"/proc/{os.getpid()}/ns/net"}})
            print(f"serving ports {port_lo}-{port_hi} on {server.getsockname()[1]}",
                  flush=True)
            served = 0
            while not stop and (not args.count or served < args.count):
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                asked = conn.getsockname()[1]  # the port the client connected to
                conn.sendall(f"port {asked}\n".encode())
                conn.close()
                served += 1
        except (RpcError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            client.call("program.unload", {"program_id": program["program_id"]})
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
