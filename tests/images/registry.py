"""Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, for tests.

Logs go to a file: the registry writes ~550 bytes per request, and an
undrained pipe blocks it after ~127 requests (reference §1.1).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

REGISTRY_BIN = "/usr/bin/docker-registry"
_LISTEN = re.compile(r'listening on 127\.0\.0\.1:(\d+)')


def available() -> bool:
    return Path(REGISTRY_BIN).exists() or shutil.which("docker-registry") is not None


class LocalRegistry:
    def __init__(self, root: Path, *, htpasswd: Path | None = None) -> None:
        self.root = root
        self.log = root / "registry.log"
        self.data = root / "data"
        self.config = root / "config.yml"
        auth = ""
        if htpasswd is not None:
            auth = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {htpasswd}\n"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog: {disabled: true}\n"
            f"storage:\n  filesystem: {{rootdirectory: {self.data}}}\n"
            "  delete: {enabled: true}\n"
            "http:\n  addr: 127.0.0.1:0\n  secret: test-secret\n" + auth)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalRegistry:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited:\n{self.log.read_text()}")
            found = _LISTEN.search(self.log.read_text(errors="replace"))
            if found:
                self.port = int(found.group(1))
                try:
                    status = httpx.get(f"http://{self.host}/v2/", timeout=1).status_code
                except httpx.HTTPError:
                    status = 0
                if status in (200, 401):
                    return self
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"docker-registry not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """A bcrypt htpasswd line (what distribution accepts). The stdlib `crypt`
    (3.11; gone in 3.13, then use `htpasswd -B`) avoids a test dependency."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    path.write_text(f"{user}:{hashed}\n")
    return path
