from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from bpfman.config import ConfigError, load_config
from bpfman.testing import markdown_blocks


def test_defaults_and_overrides(tmp_path: Path) -> None:
    cfg_file = tmp_path / "b.toml"
    cfg_file.write_text('[daemon]\nsocket_mode = "0600"\nlog_level = "debug"\n')
    cfg = load_config(cfg_file, {"socket": "/tmp/x.sock", "bpffs": None})
    assert cfg.daemon.socket == Path("/tmp/x.sock")
    assert cfg.daemon.socket_mode_bits == 0o600
    assert cfg.daemon.bpffs == Path("/run/bpfman/fs")
    assert cfg.db_path == Path("/var/lib/bpfman/state.sqlite3")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[daemon]\nsokcet = '/x'\n", "sokcet"),
        ("[daemon]\nmax_request_bytes = 'big'\n", "max_request_bytes"),
        ("[daemon]\nbpffs = '/tmp/a.b/fs'\n", "bpffs"),
        ("[daemon]\nlog_level = 'loud'\n", "log_level"),
        ("[daemon\n", "b.toml"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    cfg_file = tmp_path / "b.toml"
    cfg_file.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(cfg_file)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("page", ["README.md", "docs/security.md"])
def test_every_rule_shown_in_the_docs_is_a_valid_config(tmp_path: Path, page: str) -> None:
    blocks = markdown_blocks(Path(__file__).parents[2] / page)
    rules = [b for b in blocks if b.startswith(("[[authorization.rules]]", "[daemon]"))]
    # ...and files written by a shell step: cat > /etc/bpfman/bpfman.toml <<'EOF'
    for block in blocks:
        rules += re.findall(r"bpfman\.toml <<'EOF'\n(.*?)\nEOF", block, re.S)
    assert rules, f"no config examples found in {page}"
    for block in rules:
        config = tmp_path / "bpfman.toml"
        config.write_text(block + "\n")
        loaded = load_config(config)
        if "[[authorization.rules]]" in block:
            assert loaded.authorization.rules, block


def test_rule_bounds_defaults(tmp_path: Path) -> None:
    config = tmp_path / "bpfman.toml"
    config.write_text('[[authorization.rules]]\nusers = ["alice"]\nmethods = ["program.*"]\n')
    [rule] = load_config(config).authorization.rules
    bounds = rule.bounds()
    assert bounds.allows_type("xdp", "xdp") and bounds.allows_type("cgroup_skb", "cgroup_skb")
    for kind, kernel_type in [("kprobe", "kprobe"), ("fentry", "tracing"), ("lsm", "lsm"),
                              ("raw_tracepoint", "raw_tracepoint"), ("uprobe", "kprobe")]:
        assert not bounds.allows_type(kind, kernel_type), kind
    assert (bounds.netns, bounds.interfaces, bounds.min_priority, bounds.as_caller) == (
        (), (), 0, True)
    config.write_text('[[authorization.rules]]\nusers = ["alice"]\nmethods = ["*"]\n'
                      'min_priority = -1\n')
    with pytest.raises(ConfigError, match="min_priority"):
        load_config(config)


# --- upstream bpfman's bpfman.toml -------------------------------------------------

UPSTREAM_SAMPLE = Path(__file__).parents[1] / "fixtures" / "upstream-bpfman.toml"


def test_upstream_sample_file_is_accepted() -> None:
    notes: list[str] = []
    cfg = load_config(UPSTREAM_SAMPLE, warnings=notes)
    assert cfg.interfaces["eth0"].xdp_mode == "drv"
    # drv = native, generic when the driver refuses it: the XDP plugin's "auto"
    assert cfg.plugins.config["xdp"]["interfaces"] == {"eth0": {"xdp_mode": "auto"}}
    assert (cfg.signing.allow_unsigned, cfg.signing.verify_enabled) == (True, True)
    assert cfg.daemon.log_level == "info"
    [note] = notes  # [database] only: level "info" and format "text" are honoured
    assert "[database]" in note and "no effect" in note and str(cfg.db_path) in note


@pytest.mark.parametrize(("mode", "ours"), [("drv", "auto"), ("skb", "generic"),
                                            ("hw", "offload")])
def test_upstream_xdp_mode_reaches_the_xdp_plugin(tmp_path: Path, mode: str, ours: str) -> None:
    from bpfman_xdp.params import XdpConfig

    config = tmp_path / "bpfman.toml"
    config.write_text(f'[interfaces.veth0]\nxdp_mode = "{mode}"\n'
                      '[plugins.config.xdp]\ndispatcher = "static"\n')
    cfg = load_config(config)
    xdp = XdpConfig.parse(cfg.plugins.config["xdp"])  # what the plugin reads
    assert (xdp.xdp_mode_for("veth0"), xdp.xdp_mode_for("eth1")) == (ours, "auto")
    assert xdp.dispatcher == "static"


def test_upstream_interfaces_and_plugin_table_must_agree(tmp_path: Path) -> None:
    config = tmp_path / "bpfman.toml"
    config.write_text('[interfaces.veth0]\nxdp_mode = "skb"\n'
                      '[plugins.config.xdp.interfaces.veth0]\nxdp_mode = "generic"\n'
                      '[plugins.config.xdp.interfaces.veth1]\ndispatcher = "single"\n')
    xdp = load_config(config).plugins.config["xdp"]["interfaces"]
    assert xdp == {"veth0": {"xdp_mode": "generic"}, "veth1": {"dispatcher": "single"}}
    config.write_text('[interfaces.veth0]\nxdp_mode = "skb"\n'
                      '[plugins.config.xdp.interfaces.veth0]\nxdp_mode = "native"\n')
    with pytest.raises(ConfigError, match=r"contradicts .*veth0.*keep one"):
        load_config(config)
    config.write_text('[interfaces.veth0]\nxdp_mode = "skb"\n'
                      '[plugins.config.xdp]\ninterfaces = "veth0"\n')
    with pytest.raises(ConfigError, match=r"interfaces must be tables"):
        load_config(config)


@pytest.mark.parametrize(
    ("text", "level", "warned"),
    [
        ('[logging]\nlevel = "debug"\n', "debug", []),
        ('[logging]\nlevel = "trace"\n', "debug", []),
        ('[logging]\nlevel = "warn"\nformat = "json"\n', "warning", ["format 'json'"]),
        ('[logging]\nlevel = "info,manager=debug"\n', "info", ["per-component"]),
        ('[logging.components]\nmanager = "debug"\n', "info", ["components"]),
        ('[daemon]\nlog_level = "error"\n[logging]\nlevel = "debug"\n', "error",
         ["[daemon] log_level"]),
    ],
)
def test_upstream_logging_table(tmp_path: Path, text: str, level: str,
                                warned: list[str]) -> None:
    config = tmp_path / "bpfman.toml"
    config.write_text(text)
    notes: list[str] = []
    assert load_config(config, warnings=notes).daemon.log_level == level
    assert len(notes) == len(warned) and all(w in n for w, n in zip(warned, notes, strict=True))


def test_command_line_log_level_beats_upstream_logging(tmp_path: Path) -> None:
    config = tmp_path / "bpfman.toml"
    config.write_text('[logging]\nlevel = "error"\n')
    assert load_config(config, {"log_level": "debug"}).daemon.log_level == "debug"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[interfaces.eth0]\nxdp_mode = "native"\n',
         r"xdp_mode must be drv, skb or hw, got 'native'.*interfaces\['eth0'\]"),
        ("[interfaces.eth0]\n", r"missing @ .*interfaces\['eth0'\].xdp_mode"),
        ("[database]\nmax_retries = 'ten'\n", r"database.max_retries"),
        ("[database]\npath = '/x'\n", r"extra fields found \(path\)"),
        ('[logging]\nlevel = "loud"\n', r"level must be one of trace, .*\.logging$"),
        ("[[grpc.endpoints]]\ntype = 'unix'\npath = '/run/bpfd/bpfd.sock'\n",
         r"\[grpc\] is upstream.*\[daemon\] socket"),
        ("[tls]\nca_cert = '/etc/bpfd/certs/ca/ca.pem'\n",
         r"\[tls\] is upstream.*authorization.rules"),
        ('[interface.eth0]\nxdp_mode = "hw"\n', r"\[interface\] .*\[interfaces.NAME\]"),
    ],
)
def test_upstream_mistakes_are_errors_that_say_what_to_use(tmp_path: Path, text: str,
                                                           needle: str) -> None:
    config = tmp_path / "bpfman.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(config)


def test_docs_upstream_example_is_the_tested_fixture() -> None:
    [block] = markdown_blocks(Path(__file__).parents[2] / "docs" / "configuration.md",
                              "Coming from upstream bpfman")
    assert tomllib.loads(block) == tomllib.loads(UPSTREAM_SAMPLE.read_text())
