"""`bpfman daemon`: the top nursery.

Start-up order: config -> memlock, bpffs and tracefs -> kernel features ->
plugins -> store -> reconcile -> listener -> serve. SIGTERM/SIGINT stop the
listener and wait for any kernel call in flight; every attached program keeps
running because its kernel objects are pinned (the daemon is not in the data
path).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

import bpfman
from bpfman import kernel
from bpfman.authz.policy import Policy
from bpfman.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from bpfman.daemon.events import EventBus
from bpfman.daemon.lane import FairLane
from bpfman.manager import Manager
from bpfman.model.caller import Caller
from bpfman.model.errors import BpfmanError
from bpfman.model.requests import NoParams
from bpfman.plugins import build_plugin_manager
from bpfman.rpc import openrpc
from bpfman.rpc.jsonrpc import Encoded
from bpfman.rpc.methods import BY_NAME, Method, build_method_table
from bpfman.rpc.server import (
    ConnectionLimits,
    listeners_from_systemd,
    open_unix_listener,
    serve_rpc,
)
from bpfman.store import Store

log = logging.getLogger("bpfman.daemon")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _notify_systemd(message: str) -> None:
    """sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            log.warning("could not notify systemd at %s", address)


def build_daemon(config: Config, extra_plugins: dict[str, Any] | None = None) -> Manager:
    """Everything up to serving: privileges, mounts, plugins, store, reconcile."""
    d = config.daemon
    kernel.raise_memlock()
    kernel.ensure_bpffs(d.bpffs)
    kernel.ensure_tracefs()
    features = kernel.probe_features()
    registry = build_plugin_manager(tuple(config.plugins.disabled), extra=extra_plugins)
    registry.pm.register(EventBus(), name="core.events")
    store = Store(config.db_path)
    manager = Manager(config, store, registry, kernel, features)
    manager.bpffs.ensure_dirs()
    return manager


def method_table(manager: Manager, lane: FairLane) -> dict[str, Method]:
    async def run_in_lane(fn: Callable[..., Any], caller: Caller, *args: Any) -> Any:
        async with lane.turn(caller.uid):
            # Never abandon a thread that may be mutating the kernel.
            return await trio.to_thread.run_sync(
                functools.partial(fn, caller, *args), abandon_on_cancel=False
            )

    table = build_method_table(manager.bindings(), run_in_lane)
    kinds = {name: owner.spec.params_type for name, owner in manager.registry.kinds.items()}

    document: list[Encoded] = []

    async def discover(caller: Caller, params: NoParams) -> Encoded:
        # The API cannot change while the daemon runs: build and encode the
        # 40 KB document once, not on the event loop for every caller.
        if not document:
            document.append(Encoded(openrpc.generate(table, version=bpfman.__version__,
                                                     attach_params=kinds)))
        return document[0]

    bus = manager.registry.pm.get_plugin("core.events")
    for name, handler in (("rpc.discover", discover), ("events.subscribe", bus.subscribe)):
        sig = BY_NAME[name]
        table[name] = Method(name, sig.params_type, sig.result_type, handler, sig.summary)
    unbound = sorted(set(BY_NAME) - set(table))
    if unbound:  # a signature nobody serves: a programming error, found at start
        raise RuntimeError(f"API methods without a handler: {unbound}")
    policy = Policy(manager.config.authorization)
    hook = manager.registry.pm.hook
    return {name: _observed(policy.guard(method), hook) for name, method in table.items()}


def _observed(method: Method, hook: Any) -> Method:
    """`method` reporting its outcome and duration to `bpfman_rpc_completed`."""
    inner = method.handler

    async def handler(caller: Caller, params: Any) -> Any:
        started = time.perf_counter()
        code: int | None = -32603
        try:
            result = await inner(caller, params)
            code = None
            return result
        except BpfmanError as exc:
            code = exc.code
            raise
        finally:
            try:
                hook.bpfman_rpc_completed(method=method.name, caller=caller,
                                          seconds=time.perf_counter() - started, error_code=code)
            except Exception:
                log.exception("bpfman_rpc_completed observer failed")

    return attrs.evolve(method, handler=handler)


def _tune_gc() -> None:
    """Everything built so far (modules, plugins, converters) lives as long as
    the daemon: freeze it out of the collector, and collect the young
    generation less often. Measured: with 1,000 programs, full collections
    scanning that heap paused a listing for up to 35 ms, once every ten."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


async def run(
    config: Config,
    *,
    extra_plugins: dict[str, Any] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    d = config.daemon
    manager = await trio.to_thread.run_sync(build_daemon, config, extra_plugins)
    try:
        drifts = await trio.to_thread.run_sync(manager.reconcile)
        log.info("reconciled state: %d repair(s)", len(drifts))
        lane = FairLane()
        methods = method_table(manager, lane)
        _tune_gc()
        # The event loop and the lane's worker thread share the GIL: with the
        # loop busy (a flooding client), each hand-over to the lane waited up
        # to the default 5 ms, several times per call (tests/kernel/test_fairness.py).
        sys.setswitchinterval(0.001)
        listeners = listeners_from_systemd()
        if listeners and (d.socket_group or d.socket_mode != "0660"):
            # The inherited socket is systemd's: its mode and group are set in
            # bpfman.socket, and the daemon cannot change them (no CAP_CHOWN).
            log.warning("socket activation: socket_mode/socket_group in the config do not"
                        " apply; set SocketMode=/SocketGroup= in bpfman.socket instead")
        where = "an inherited socket (socket activation)" if listeners else str(d.socket)
        if listeners is None:
            listeners = [
                open_unix_listener(d.socket, mode=d.socket_mode_bits, group=d.socket_group)
            ]
            created_socket: Path | None = d.socket
        else:
            created_socket = None
            # Where it really listens, not the unused configured path: for
            # `bpfman info` and for plugins that call the API (metrics).
            served = listeners[0].socket.getsockname()
            if isinstance(served, str) and served.startswith("/"):
                manager.config = attrs.evolve(manager.config, daemon=attrs.evolve(
                    manager.config.daemon, socket=Path(served)))
        with contextlib.ExitStack() as no_undo:
            ctx = manager.context(None, no_undo)
            manager.notify("bpfman_daemon_started", ctx=ctx, drifts=drifts)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    serve_rpc, listeners, methods, max_line=d.max_request_bytes,
                    limits=ConnectionLimits(d.max_connections, d.read_timeout_seconds,
                                            d.send_timeout_seconds, d.max_connections_per_uid),
                )
            )
            log.info("serving on %s (bpffs %s, state %s)", where, d.bpffs, d.state_dir)
            _notify_systemd("READY=1")
            task_status.started()
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("received %s: stopping; attached programs keep running",
                             signal.Signals(signum).name)
                    _notify_systemd("STOPPING=1")
                    nursery.cancel_scope.cancel()
                    break
        if created_socket is not None:
            created_socket.unlink(missing_ok=True)
    finally:
        manager.store.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The daemon's options (also walked by the CLI's shell completion)."""
    parser = argparse.ArgumentParser(prog="bpfman daemon", description="Run the bpfman daemon.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help=f"TOML config file (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--socket", type=Path, help="Unix socket path")
    parser.add_argument("--state-dir", type=Path, help="directory of the state database")
    parser.add_argument("--bpffs", type=Path, help="bpffs directory for pins (mounted if needed)")
    parser.add_argument("--socket-group", help="group owning the socket")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    notes: list[str] = []  # upstream settings with no effect here, logged below
    try:
        config = load_config(
            args.config,
            {
                "socket": args.socket,
                "state_dir": args.state_dir,
                "bpffs": args.bpffs,
                "socket_group": args.socket_group,
                "log_level": args.log_level,
            },
            notes,
        )
    except ConfigError as exc:
        print(f"bpfman daemon: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config.daemon.log_level)
    for note in notes:
        log.warning("%s: %s", args.config, note)
    if os.geteuid() != 0:
        log.warning("not running as root: loading programs will likely fail")
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(functools.partial(run, config))
    return 0
