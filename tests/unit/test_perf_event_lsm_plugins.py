"""The perf_event and lsm plugins without a kernel: registration through the
entry point, attach params (shapes, defaults, exclusive fields), the
OpenRPC schema the CLI builds its options from, and link summaries."""

from __future__ import annotations

import pytest

from bpfman.model import convert
from bpfman.plugins import build_plugin_manager
from bpfman.rpc.openrpc import SchemaBuilder
from bpfman_lsm.plugin import LsmParams
from bpfman_perf_event.plugin import DEFAULT_FREQUENCY, EVENTS, PerfEventParams


def test_registered_as_ordinary_plugins() -> None:
    registry = build_plugin_manager()
    perf, lsm = registry.kinds["perf_event"], registry.kinds["lsm"]
    assert (perf.plugin_name, perf.spec.kernel_prog_type) == ("perf_event", "perf_event")
    assert perf.spec.required_features == ("bpf_link_perf_event",)
    assert (lsm.plugin_name, lsm.spec.kernel_prog_type) == ("lsm", "lsm")
    assert lsm.spec.required_features == ("lsm_programs",)
    assert not perf.spec.multiprog and not lsm.spec.multiprog


def test_perf_event_params() -> None:
    p = convert.structure({"event": "cpu-clock", "frequency": 99}, PerfEventParams)
    assert (p.type_config, p.effective_frequency, p.sample_period) == ((1, 0), 99, None)
    assert p.describe() == "cpu-clock 99Hz all CPUs"
    default = convert.structure({"event": "cycles"}, PerfEventParams)
    assert default.effective_frequency == DEFAULT_FREQUENCY and default.type_config == (0, 0)
    raw = convert.structure({"type": 1, "config": 1, "sample_period": 10_000, "pid": 42},
                            PerfEventParams)
    assert raw.type_config == (1, 1) and raw.effective_frequency is None
    assert raw.describe() == "type=1,config=1 every 10000 pid 42"
    cg = convert.structure({"event": "task-clock", "cgroup": "/sys/fs/cgroup/x"},
                           PerfEventParams)
    assert cg.describe().endswith("cgroup /sys/fs/cgroup/x")


@pytest.mark.parametrize("bad, where", [
    ({}, "give event"),
    ({"event": "nope"}, "$.event"),
    ({"type": 1}, "give event"),
    ({"event": "cpu-clock", "type": 1, "config": 0}, "not both"),
    ({"event": "cpu-clock", "frequency": 99, "sample_period": 1}, "not both"),
    ({"event": "cpu-clock", "frequency": 0}, "frequency must be positive"),
    ({"event": "cpu-clock", "pid": 1, "cgroup": "/sys/fs/cgroup"}, "pid or cgroup"),
    ({"event": "cpu-clock", "cgroup": "relative"}, "absolute"),
    ({"event": "cpu-clock", "iface": "eth0"}, "iface"),
])
def test_perf_event_params_refused(bad: dict, where: str) -> None:
    with pytest.raises(Exception) as exc:
        convert.structure(bad, PerfEventParams)
    assert where in " ".join(convert.describe_errors(exc.value))


def test_schema_lists_event_choices_and_docs() -> None:
    schema = SchemaBuilder().object_schema(PerfEventParams)
    props = schema["properties"]
    event_enum = [v for alt in props["event"].get("anyOf", [props["event"]])
                  for v in alt.get("enum", [])]
    assert set(event_enum) == set(EVENTS)
    for name in ("event", "type", "config", "sample_period", "frequency", "pid", "cgroup"):
        assert props[name].get("description"), name
    assert schema.get("required", []) == [] and schema["description"]
    assert convert.structure({}, LsmParams) == LsmParams()
