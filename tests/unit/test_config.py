from __future__ import annotations

from pathlib import Path

import pytest

from bpfman.config import ConfigError, load_config


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
