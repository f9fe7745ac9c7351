"""Prometheus metrics for pybpfman: a cross-cutting plugin built only on the
observer hooks and the public API (the proof that such plugins need no core
change).

Off by default. Enable it in the daemon config::

    [plugins.config.metrics]
    enabled = true
    listen = "127.0.0.1:9494"     # host:port of the /metrics HTTP endpoint

Exposed (prefix ``bpfman_``): ``program_run_count_total`` and
``program_run_time_seconds_total`` per managed program (kernel BPF stats,
switched on while the plugin runs), ``programs`` and ``links`` per program
type, ``rpc_calls_total`` by method and outcome, ``rpc_latency_seconds`` by
method (histogram).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bpfman import hookimpl

log = logging.getLogger("bpfman.plugin.metrics")


class _StateCollector(Collector):
    """Reads the daemon's state through its own API at scrape time."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def collect(self) -> Iterator[Any]:
        from bpfman.client import Client

        with Client(self.socket_path, timeout=10) as client:
            programs = client.call("program.list", {})
            links = client.call("link.list", {})
        runs = CounterMetricFamily("bpfman_program_run_count", "times the program ran",
                                   labels=["program_id", "name", "type"])
        run_time = CounterMetricFamily("bpfman_program_run_time_seconds",
                                       "time spent running the program",
                                       labels=["program_id", "name", "type"])
        per_type: dict[str, int] = {}
        for p in programs:
            per_type[p["type"]] = per_type.get(p["type"], 0) + 1
            kernel = p.get("kernel") or {}
            labels = [str(p["program_id"]), p["name"], p["type"]]
            runs.add_metric(labels, kernel.get("run_count") or 0)
            run_time.add_metric(labels, (kernel.get("run_time_ns") or 0) / 1e9)
        programs_gauge = GaugeMetricFamily("bpfman_programs", "managed programs",
                                           labels=["type"])
        for kind, count in sorted(per_type.items()):
            programs_gauge.add_metric([kind], count)
        links_gauge = GaugeMetricFamily("bpfman_links", "managed links", labels=["type"])
        link_types: dict[str, int] = {}
        for link in links:
            link_types[link["type"]] = link_types.get(link["type"], 0) + 1
        for kind, count in sorted(link_types.items()):
            links_gauge.add_metric([kind], count)
        yield from (runs, run_time, programs_gauge, links_gauge)


class MetricsPlugin:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("bpfman_rpc_calls", "API calls", ["method", "outcome"],
                             registry=self.registry)
        self.latency = Histogram("bpfman_rpc_latency_seconds", "API call latency", ["method"],
                                 registry=self.registry)
        self.enabled = False
        self._stats_fd: int | None = None
        self._server: Any = None

    @hookimpl
    def bpfman_daemon_started(self, ctx: Any, drifts: list[Any]) -> None:
        settings = ctx.config.plugins.config.get("metrics", {})
        if not settings.get("enabled", False):
            return
        host, _, port = str(settings.get("listen", "127.0.0.1:9494")).rpartition(":")
        try:
            self._stats_fd = ctx.kernel.enable_bpf_stats()
        except Exception as exc:  # metrics without run times beat no metrics
            log.warning("BPF run-time statistics unavailable: %s", exc)
        self.registry.register(_StateCollector(str(ctx.config.daemon.socket)))
        self._server, _thread = start_http_server(int(port), addr=host or "127.0.0.1",
                                                  registry=self.registry)
        self.enabled = True
        log.info("serving Prometheus metrics on http://%s:%s/metrics", host, port)

    @hookimpl
    def bpfman_rpc_completed(self, method: str, caller: Any, seconds: float,
                             error_code: int | None) -> None:
        if not self.enabled:
            return
        self.calls.labels(method, "ok" if error_code is None else str(error_code)).inc()
        self.latency.labels(method).observe(seconds)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._stats_fd is not None:
            os.close(self._stats_fd)


plugin = MetricsPlugin()
