from __future__ import annotations

import re
from pathlib import Path

import pytest

from bpfman.daemon.config import ConfigError, load_config
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
