"""The ``[images]`` table of the daemon's configuration: timeouts and registries."""

from __future__ import annotations

from pathlib import Path

import attrs

from bpfman.images.oci import Credentials
from bpfman.model.errors import (
    PullFailed,
)


@attrs.frozen(repr=False)
class RegistryConfig:
    """``[[images.registries]]``: how to talk to one registry host."""

    host: str
    #: plain http instead of https (a loopback or lab registry); off by default
    plain_http: bool = False
    username: str | None = None
    #: file holding the password (mode 0600): never in the config or the state
    password_file: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path))

    def credentials(self) -> Credentials | None:
        if self.username is None:
            return None
        password = ""
        if self.password_file is not None:
            try:
                password = self.password_file.read_text().rstrip("\n")
            except OSError as exc:
                raise PullFailed(f"cannot read password_file for {self.host}: {exc}",
                                 reason="credentials", registry=self.host) from None
        return Credentials(self.username, password)

    def __repr__(self) -> str:
        return f"RegistryConfig(host={self.host!r}, plain_http={self.plain_http})"


@attrs.frozen
class ImagesConfig:
    """``[images]``."""

    registries: list[RegistryConfig] = attrs.field(factory=list)
    timeout_seconds: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    max_layer_bytes: int = attrs.field(default=64 << 20, validator=attrs.validators.ge(1024))

    def registry(self, host: str) -> RegistryConfig:
        for r in self.registries:
            if r.host == host:
                return r
        return RegistryConfig(host)
