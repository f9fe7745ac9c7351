"""Daemon configuration: TOML -> frozen attrs `Config`.

An unknown key or a bad value is a startup error naming the key; nothing
falls back silently. Command-line options override the file.

    [daemon]
    socket = "/run/bpfman/bpfman.sock"
    socket_mode = "0660"
    socket_group = "bpfman"          # optional; group that may use the socket
    state_dir = "/var/lib/bpfman"
    bpffs = "/run/bpfman/fs"
    max_request_bytes = 1048576
    lost_programs = "clear"          # or "restore": reload programs lost in a reboot
    max_connections = 256            # connections served at once (root not counted)
    max_connections_per_uid = 32     # of which one uid may hold at most this many
    read_timeout_seconds = 300       # a request line must arrive within this
    send_timeout_seconds = 30        # a client must read its response within this
    log_level = "info"

    [plugins]
    disabled = []                    # entry-point names not to load

    [plugins.config.NAME]            # free-form table handed to plugin NAME

    [[authorization.rules]]          # see bpfman.authz.policy; root may do everything
    groups = ["bpfman-admin"]
    methods = ["*"]

    [images]                         # see docs/images.md
    timeout_seconds = 30
    [[images.registries]]
    host = "127.0.0.1:5000"
    plain_http = true                # https unless set, per registry
    username = "ci"
    password_file = "/etc/bpfman/registry-ci.password"

    [signing]                        # see bpfman.images.signing and docs/images.md
    verify_enabled = true
    allow_unsigned = true            # forgives a MISSING signature only
    trusted_root = "/etc/bpfman/trusted_root.json"   # unset: embedded public-good root
    public_keys = ["/etc/bpfman/cosign.pub"]
    [[signing.trusted_identities]]
    certificate_identity_regexp = ".*@example.com"
    certificate_oidc_issuer = "https://accounts.google.com"
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

from bpfman.authz.policy import AuthorizationConfig
from bpfman.images import ImagesConfig
from bpfman.images.signing import SigningConfig
from bpfman.model.convert import converter, describe_errors

DEFAULT_CONFIG_PATH = Path("/etc/bpfman/bpfman.toml")


class ConfigError(Exception):
    pass


@attrs.frozen
class DaemonConfig:
    socket: Path = attrs.field(default=Path("/run/bpfman/bpfman.sock"), converter=Path)
    socket_mode: str = attrs.field(
        default="0660", validator=attrs.validators.matches_re(r"^0?[0-7]{3}$")
    )
    socket_group: str | None = None
    state_dir: Path = attrs.field(default=Path("/var/lib/bpfman"), converter=Path)
    bpffs: Path = attrs.field(default=Path("/run/bpfman/fs"), converter=Path)
    max_request_bytes: int = attrs.field(default=1 << 20)
    max_connections: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    max_connections_per_uid: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    read_timeout_seconds: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    send_timeout_seconds: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    lost_programs: str = attrs.field(
        default="clear", validator=attrs.validators.in_({"clear", "restore"})
    )
    log_level: str = attrs.field(
        default="info", validator=attrs.validators.in_({"debug", "info", "warning", "error"})
    )

    @property
    def socket_mode_bits(self) -> int:
        return int(self.socket_mode, 8)

    @max_request_bytes.validator
    def _check_max(self, _a: Any, value: int) -> None:
        if value < 1024:
            raise ValueError("max_request_bytes must be at least 1024")

    @bpffs.validator
    def _check_bpffs(self, _a: Any, value: Path) -> None:
        # libbpf rewrites '.' in pin paths, so a dotted bpffs breaks pinning.
        if "." in str(value):
            raise ValueError("bpffs path must not contain '.'")


@attrs.frozen
class PluginsConfig:
    disabled: list[str] = attrs.field(factory=list)
    config: dict[str, dict[str, Any]] = attrs.field(factory=dict)


@attrs.frozen
class Config:
    daemon: DaemonConfig = attrs.field(factory=DaemonConfig)
    plugins: PluginsConfig = attrs.field(factory=PluginsConfig)
    authorization: AuthorizationConfig = attrs.field(factory=AuthorizationConfig)
    images: ImagesConfig = attrs.field(factory=ImagesConfig)
    signing: SigningConfig = attrs.field(factory=SigningConfig)

    @property
    def db_path(self) -> Path:
        return self.daemon.state_dir / "state.sqlite3"


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read `path` (missing default file = defaults) and apply daemon overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            if path != DEFAULT_CONFIG_PATH:
                raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if overrides:
        daemon = dict(data.get("daemon", {}))
        daemon.update({k: v for k, v in overrides.items() if v is not None})
        data = {**data, "daemon": daemon}
    try:
        return converter.structure(data, Config)
    except Exception as exc:
        lines = describe_errors(exc, prefix=str(path or "config"))
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None
