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

Upstream bpfman's own tables are accepted too (docs/configuration.md):

    [interfaces.eth0]                # -> [plugins.config.xdp.interfaces.eth0]
    xdp_mode = "drv"                 # drv -> auto, skb -> generic, hw -> offload
    [database]                       # sled's open retries: no effect (warned)
    max_retries = 10
    millisec_delay = 1000
    [logging]                        # the Go rewrite's
    level = "info"                   # -> [daemon] log_level (trace -> debug)
    format = "text"                  # "json" and components: warned, no effect
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

from bpfman.authz.policy import AuthorizationConfig
from bpfman.images.config import ImagesConfig
from bpfman.images.signing import SigningConfig
from bpfman.model.convert import converter, describe_errors

DEFAULT_CONFIG_PATH = Path("/etc/bpfman/bpfman.toml")


class ConfigError(Exception):
    pass


#: upstream's [interfaces.NAME] xdp_mode -> the XDP plugin's xdp_mode. drv
#: falls back to generic when the driver refuses native, as upstream does.
UPSTREAM_XDP_MODES = {"drv": "auto", "skb": "generic", "hw": "offload"}
#: the Go rewrite's [logging] level -> our log_level
UPSTREAM_LOG_LEVELS = {"trace": "debug", "debug": "debug", "info": "info",
                       "warn": "warning", "warning": "warning", "error": "error"}
#: upstream (and bpfd) tables that have no counterpart: what to use instead
UPSTREAM_REPLACED = {
    "grpc": "this daemon serves one Unix socket: use [daemon] socket, socket_mode"
            " and socket_group",
    "tls": "callers are identified by the Unix socket's peer credentials, not TLS:"
           " use [daemon] socket_group and [[authorization.rules]]",
    "interface": "use [interfaces.NAME] xdp_mode (or [plugins.config.xdp.interfaces.NAME])",
}


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


def _check_log_spec(_self: object, _a: attrs.Attribute, value: str | None) -> None:
    if value is not None and _base_level(value) not in UPSTREAM_LOG_LEVELS:
        raise ValueError(f"level must be one of {', '.join(UPSTREAM_LOG_LEVELS)}"
                         " (optionally followed by ,component=level)")


def _base_level(spec: str) -> str:
    """"info,manager=debug" -> "info" (the Go rewrite's log spec)."""
    return next((p.strip() for p in spec.split(",") if "=" not in p), "info")


@attrs.frozen
class InterfaceConfig:
    """Upstream's ``[interfaces.NAME]``: the XDP attach mode on interface NAME."""

    xdp_mode: str = attrs.field()

    @xdp_mode.validator
    def _check_mode(self, _a: Any, value: str) -> None:
        if value not in UPSTREAM_XDP_MODES:
            raise ValueError(f"xdp_mode must be drv, skb or hw, got {value!r} (this daemon's"
                             " auto/native/generic/offload go in [plugins.config.xdp])")


@attrs.frozen
class DatabaseConfig:
    """Upstream's ``[database]`` (sled open retries). State here is one sqlite
    file under state_dir, so these have no effect."""

    max_retries: int = 10
    millisec_delay: int = 1000


@attrs.frozen
class LoggingConfig:
    """The Go rewrite's ``[logging]``."""

    level: str | None = attrs.field(default=None, validator=_check_log_spec)
    format: str = attrs.field(default="text", validator=attrs.validators.in_({"text", "json"}))
    components: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Config:
    daemon: DaemonConfig = attrs.field(factory=DaemonConfig)
    plugins: PluginsConfig = attrs.field(factory=PluginsConfig)
    authorization: AuthorizationConfig = attrs.field(factory=AuthorizationConfig)
    images: ImagesConfig = attrs.field(factory=ImagesConfig)
    signing: SigningConfig = attrs.field(factory=SigningConfig)
    # Upstream bpfman's tables, folded into ours by `load_config`.
    interfaces: dict[str, InterfaceConfig] = attrs.field(factory=dict)
    database: DatabaseConfig | None = None
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)

    @property
    def db_path(self) -> Path:
        return self.daemon.state_dir / "state.sqlite3"


def load_config(path: Path | None, overrides: dict[str, Any] | None = None,
                warnings: list[str] | None = None) -> Config:
    """Read `path` (missing default file = defaults) and apply daemon overrides.

    Upstream bpfman's tables are mapped onto ours; what has no effect here is
    appended to `warnings` (for the caller to log once logging is set up)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            if path != DEFAULT_CONFIG_PATH:
                raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    replaced = [f"[{key}] is upstream bpfman's, not used here: {hint}"
                for key, hint in UPSTREAM_REPLACED.items() if key in data]
    if replaced:
        raise ConfigError(f"{path}: " + "; ".join(replaced))
    if overrides:
        daemon = dict(data.get("daemon", {}))
        daemon.update({k: v for k, v in overrides.items() if v is not None})
        data = {**data, "daemon": daemon}
    try:
        config = converter.structure(data, Config)
    except Exception as exc:
        lines = describe_errors(exc, prefix=str(path or "config"))
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None
    notes: list[str] = []
    config = _from_upstream(config, "log_level" in data.get("daemon", {}), notes)
    if warnings is not None:
        warnings.extend(notes)
    return config


def _from_upstream(config: Config, log_level_set: bool, notes: list[str]) -> Config:
    """Fold upstream's [interfaces], [logging] and [database] into our tables."""
    plugins = config.plugins
    if config.interfaces:
        xdp = dict(plugins.config.get("xdp", {}))
        raw = xdp.get("interfaces", {})
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise ConfigError("[plugins.config.xdp] interfaces must be tables"
                              " ([plugins.config.xdp.interfaces.NAME])")
        per_iface = {k: dict(v) for k, v in raw.items()}
        for name, iface in config.interfaces.items():
            mode = UPSTREAM_XDP_MODES[iface.xdp_mode]
            ours = per_iface.setdefault(name, {})
            if ours.setdefault("xdp_mode", mode) != mode:
                raise ConfigError(
                    f"[interfaces.{name}] xdp_mode = {iface.xdp_mode!r} (xdp_mode {mode!r})"
                    f" contradicts [plugins.config.xdp.interfaces.{name}] xdp_mode ="
                    f" {ours['xdp_mode']!r}: keep one")
        plugins = attrs.evolve(plugins, config={**plugins.config,
                                                "xdp": {**xdp, "interfaces": per_iface}})
        if "xdp" in plugins.disabled:
            notes.append("[interfaces] sets XDP modes but the xdp plugin is disabled:"
                         " no effect")
    daemon = config.daemon
    logging = config.logging
    if logging.level is not None:
        level = UPSTREAM_LOG_LEVELS[_base_level(logging.level)]
        if not log_level_set:
            daemon = attrs.evolve(daemon, log_level=level)
        elif level != daemon.log_level:
            notes.append(f"[logging] level {logging.level!r} ignored:"
                         f" [daemon] log_level (or --log-level) {daemon.log_level!r} wins")
        if "=" in logging.level:
            notes.append(f"[logging] level {logging.level!r}: per-component levels have no"
                         f" effect here; the daemon logs at {daemon.log_level!r}")
    if logging.components:
        notes.append("[logging] components has no effect here: one log level for the"
                     " daemon ([daemon] log_level)")
    if logging.format != "text":
        notes.append(f"[logging] format {logging.format!r} has no effect here:"
                     " the daemon logs text lines to stderr (the journal under systemd)")
    if config.database is not None:
        notes.append("[database] max_retries/millisec_delay have no effect here: the"
                     f" state is one sqlite file, {config.db_path}, opened once at start")
    return attrs.evolve(config, plugins=plugins, daemon=daemon)
