"""Prometheus metrics for pybpfman: a cross-cutting plugin built only on the
observer hooks and the public API (the proof that such plugins need no core
change).

Off by default. Enable it in the daemon config::

    [plugins.config.metrics]
    enabled = true
    listen = "127.0.0.1:9494"     # host:port of the HTTP endpoint

``GET /metrics`` answers the Prometheus text format (prometheus_client's
``CONTENT_TYPE_LATEST``); every other path answers 404. Exposed:

``bpfman_program_runs_total``, ``bpfman_program_run_seconds_total``
    ``{program_id,name,type}``: the kernel's run count and run time of each
    managed program (BPF statistics, switched on while the plugin runs).
    They count the program only when the kernel runs it *as itself*. A program
    in an XDP or TC chain built as one program (dispatcher mode ``static``) or
    run as an extension of a dispatcher (``libxdp``, TC ``freplace``) stays at
    0: the kernel runs the dispatcher, and per-program counts do not exist.
    See the dispatcher series below.
``bpfman_dispatcher_runs_total``, ``bpfman_dispatcher_run_seconds_total``
    ``{attach_point,type,mode,interface,netns,direction,program_id}``: the
    program the kernel really runs at each shared attach point
    (``dispatcher.list``): the generated chain (``static``), the libxdp or
    freplace dispatcher, or the one program itself (``single``: then it is
    also in ``bpfman_program_runs_total``). ``attach_point`` is the daemon's
    key of the attach point; ``interface``, ``netns`` and ``direction`` come
    from the attach parameters of its links (empty when not set). Attach
    points without a dispatcher program of the daemon's (TCX: the kernel's
    own chain runs each program, so their own counters are real) are left out.
``bpfman_dispatcher_slot{attach_point,position,program_id,link_id}``
    Value 1 for each program of a chain, ``position`` 0 running first: joins
    a dispatcher's series to the programs it runs.
``bpfman_programs{type}``, ``bpfman_links{type}``
    Managed programs and links, per program type.
``bpfman_rpc_requests_total{method,outcome}``
    API requests that reached a method (the scrape's own calls are not
    counted). ``outcome`` is ``ok`` or the name of the error's code: the
    ``kind`` of the `bpfman.BpfmanError` subclass that introduces the code
    (``invalid_params``, ``not_found``, ``permission_denied``, ``conflict``,
    ``kernel_error``...), JSON-RPC's ``internal_error``, or ``error`` for a
    code unknown to this daemon.
``bpfman_rpc_request_duration_seconds{method}``
    Histogram of the time spent in each method.
``bpfman_build_info{version,python}``
    Always 1: the daemon's version and the Python running it.

No ``_created`` series: every family is built at scrape time by this
plugin's own collectors, which set no creation time (no process-wide switch
such as ``disable_created_metrics()`` is needed).
"""

from __future__ import annotations

import http.server
import logging
import os
import platform
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bpfman import BpfmanError, __version__, hookimpl

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

log = logging.getLogger("bpfman.plugin.metrics")

#: Histogram buckets in seconds: most calls take well under 10 ms.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, float("inf"))

#: JSON-RPC's own codes (bpfman.rpc.jsonrpc), named as the specification names them.
_PROTOCOL_OUTCOMES = {-32700: "parse_error", -32600: "invalid_request",
                      -32601: "method_not_found", -32602: "invalid_params",
                      -32603: "internal_error"}


def outcome_names() -> dict[int, str]:
    """Error code -> outcome label: the `kind` of the error class that
    introduces the code (subclasses such as ProgramNotFound share their
    base's code, so 1100 is ``not_found``)."""
    names = dict(_PROTOCOL_OUTCOMES)
    stack: list[type[BpfmanError]] = [BpfmanError]
    while stack:  # every error class, through the plugin API's base class
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if all(getattr(base, "code", None) != cls.code for base in cls.__bases__):
            names[cls.code] = cls.kind
    return names


class RpcStats:
    """Counts and durations of API requests, recorded from the daemon's trio
    thread and read by the HTTP thread (hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes = outcome_names()
        self.requests: dict[tuple[str, str], int] = {}
        # method -> (count per bucket, not cumulative; sum of seconds)
        self.durations: dict[str, tuple[list[int], float]] = {}

    def record(self, method: str, seconds: float, error_code: int | None) -> None:
        outcome = "ok" if error_code is None else self._outcomes.get(error_code, "error")
        bucket = next(i for i, bound in enumerate(BUCKETS) if seconds <= bound)
        with self._lock:
            key = (method, outcome)
            self.requests[key] = self.requests.get(key, 0) + 1
            counts, total = self.durations.get(method) or ([0] * len(BUCKETS), 0.0)
            counts[bucket] += 1
            self.durations[method] = (counts, total + seconds)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        with self._lock:
            requests = sorted(self.requests.items())
            durations = sorted((m, list(c), s) for m, (c, s) in self.durations.items())
        family = CounterMetricFamily(
            "bpfman_rpc_requests", "API requests handled, by method and outcome (ok, or the"
            " error's name)", labels=["method", "outcome"])
        for (method, outcome), count in requests:
            family.add_metric([method, outcome], count)
        yield family
        histogram = HistogramMetricFamily(
            "bpfman_rpc_request_duration_seconds", "Time spent handling API requests,"
            " in seconds", labels=["method"])
        for method, counts, total in durations:
            cumulative, buckets = 0, []
            for bound, count in zip(BUCKETS, counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            histogram.add_metric([method], buckets, total)
        yield histogram


def _counter(name: str, text: str, labels: list[str]) -> Any:
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, text, labels=labels)


def _gauge(name: str, text: str, labels: list[str]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, text, labels=labels)


def _seconds(kernel: dict[str, Any]) -> float:
    return (kernel.get("run_time_ns") or 0) / 1e9


class StateCollector:
    """Reads the daemon's state through its own API at scrape time."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def collect(self) -> Iterator[Metric]:
        from bpfman.client import Client, RpcError

        with Client(self.socket_path, timeout=10) as client:
            programs = client.call("program.list", {})
            links = client.call("link.list", {})
            dispatchers = client.call("dispatcher.list", {})
            managed = {p["program_id"]: p for p in programs}
            chain_kernel: dict[int, dict[str, Any]] = {}
            for d in dispatchers:
                pid = d.get("program_id")
                if pid is None or pid in managed:  # no program of ours, or `single`
                    continue
                try:
                    chain_kernel[pid] = client.call("program.get", {"program_id": pid})
                except RpcError as exc:  # replaced or removed since dispatcher.list
                    log.debug("dispatcher program %d: %s", pid, exc)
        yield from self._programs(programs)
        yield from self._dispatchers(dispatchers, links, {**managed, **chain_kernel})
        yield from self._counts("bpfman_links", "Managed links, by program type", links)

    def _programs(self, programs: list[dict[str, Any]]) -> Iterator[Metric]:
        labels = ["program_id", "name", "type"]
        runs = _counter(
            "bpfman_program_runs", "Times the kernel ran the program as itself (BPF stats);"
            " 0 for a program spliced into a static XDP/TC chain or run as an extension of a"
            " dispatcher: the chain runs as one program, see bpfman_dispatcher_runs_total",
            labels)
        run_time = _counter(
            "bpfman_program_run_seconds", "Seconds the kernel spent running the program as"
            " itself (BPF stats; same caveat as bpfman_program_runs_total)", labels)
        for p in programs:
            kernel = p.get("kernel") or {}
            values = [str(p["program_id"]), p["name"], p["type"]]
            runs.add_metric(values, kernel.get("run_count") or 0)
            run_time.add_metric(values, _seconds(kernel))
        yield runs
        yield run_time
        yield from self._counts("bpfman_programs", "Managed programs, by program type", programs)

    def _dispatchers(self, dispatchers: list[dict[str, Any]], links: list[dict[str, Any]],
                     programs: dict[int, dict[str, Any]]) -> Iterator[Metric]:
        by_id = {ln["link_id"]: ln for ln in links}
        labels = ["attach_point", "type", "mode", "interface", "netns", "direction",
                  "program_id"]
        runs = _counter(
            "bpfman_dispatcher_runs", "Times the kernel ran the program at a shared XDP/TC"
            " attach point: the dispatcher or chain that runs its programs, or the one program"
            " (mode single); per-program counts of a static chain do not exist: it runs as one"
            " program", labels)
        run_time = _counter(
            "bpfman_dispatcher_run_seconds", "Seconds the kernel spent running the program at"
            " a shared XDP/TC attach point (the whole chain)", labels)
        slots = _gauge(
            "bpfman_dispatcher_slot", "1 for each program in a dispatcher's chain; position 0"
            " runs first", ["attach_point", "position", "program_id", "link_id"])
        for d in dispatchers:
            for position, slot in enumerate(d.get("slots") or []):
                slots.add_metric([d["attach_point"], str(position), str(slot["program_id"]),
                                  str(slot["link_id"])], 1)
            program = programs.get(d.get("program_id") or 0)
            if program is None:
                continue
            # Where it is: every link of an attach point shares these params.
            first = next(iter(d.get("links") or []), None)
            params: dict[str, Any] = (by_id.get(first) or {}).get("params") or {}
            kernel = program.get("kernel") or {}
            values = [d["attach_point"], d["type"], d["mode"], str(params.get("iface") or ""),
                      str(params.get("netns") or ""), str(params.get("direction") or ""),
                      str(d["program_id"])]
            runs.add_metric(values, kernel.get("run_count") or 0)
            run_time.add_metric(values, _seconds(kernel))
        yield from (runs, run_time, slots)

    @staticmethod
    def _counts(name: str, text: str, items: list[dict[str, Any]]) -> Iterator[Metric]:
        per_type: dict[str, int] = {}
        for item in items:
            per_type[item["type"]] = per_type.get(item["type"], 0) + 1
        gauge = _gauge(name, text, ["type"])
        for kind, count in sorted(per_type.items()):
            gauge.add_metric([kind], count)
        yield gauge


class BuildInfo:
    def collect(self) -> Iterator[Metric]:
        gauge = _gauge("bpfman_build_info", "Always 1: the daemon's version and the Python"
                       " running it", ["version", "python"])
        gauge.add_metric([__version__, platform.python_version()], 1)
        yield gauge


def _handler(registry: CollectorRegistry) -> type[http.server.BaseHTTPRequestHandler]:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path != "/metrics":
                self._answer(404, b"not found: the metrics are at /metrics\n",
                             "text/plain; charset=utf-8")
                return
            try:
                body = generate_latest(registry)
            except Exception as exc:  # the daemon did not answer: say so, Prometheus marks up=0
                log.warning("metrics scrape failed: %s", exc)
                self._answer(500, f"scrape failed: {exc}\n".encode(),
                             "text/plain; charset=utf-8")
                return
            self._answer(200, body, CONTENT_TYPE_LATEST)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class MetricsPlugin:
    def __init__(self) -> None:
        self.enabled = False
        self.rpc = RpcStats()
        self._stats_fd: int | None = None
        self._server: http.server.ThreadingHTTPServer | None = None

    @hookimpl
    def bpfman_daemon_started(self, ctx: Any, drifts: list[Any]) -> None:
        settings = ctx.config.plugins.config.get("metrics", {})
        if not settings.get("enabled", False):
            return
        # prometheus_client is imported only when the plugin is switched on.
        from prometheus_client import CollectorRegistry

        host, _, port = str(settings.get("listen", "127.0.0.1:9494")).rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            self._stats_fd = ctx.kernel.enable_bpf_stats()
        except Exception as exc:  # metrics without run times beat no metrics
            log.warning("BPF run-time statistics unavailable: %s", exc)
        registry = CollectorRegistry(auto_describe=False)
        for collector in (BuildInfo(), StateCollector(str(ctx.config.daemon.socket)), self.rpc):
            registry.register(collector)  # type: ignore[arg-type]
        server_class = http.server.ThreadingHTTPServer
        if ":" in host:
            server_class = type("Server6", (server_class,), {"address_family": socket.AF_INET6})
        self._server = server_class((host, int(port)), _handler(registry))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="bpfman-metrics",
                         daemon=True).start()
        self.enabled = True
        log.info("serving Prometheus metrics on http://%s/metrics",
                 f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    @hookimpl
    def bpfman_rpc_completed(self, method: str, caller: Any, seconds: float,
                             error_code: int | None) -> None:
        # The scrape's own calls come from this process: counting them would
        # make every scrape change the figures it reports.
        if self.enabled and getattr(caller, "pid", None) != os.getpid():
            self.rpc.record(method, seconds, error_code)

    def close(self) -> None:
        """Stop serving and turn the BPF statistics off (for in-process use:
        the daemon's own exit does both)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        fd, self._stats_fd = self._stats_fd, None
        if fd is not None:
            os.close(fd)
        self.enabled = False


plugin = MetricsPlugin()
