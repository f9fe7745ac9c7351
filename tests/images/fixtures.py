"""pytest fixtures: import them into a test module to use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from images.registry import LocalRegistry, available, write_htpasswd
from images.sigstore_local import LocalSigstore

NEEDS_REGISTRY = pytest.mark.skipif(
    not available(), reason="docker-registry is not installed (apt-get install docker-registry;"
    " scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A fresh anonymous registry on 127.0.0.1 for the module."""
    if not available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    reg = LocalRegistry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield reg
    finally:
        reg.stop()


AUTH_USER, AUTH_PASSWORD = "ci", "s3cret-pw"


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry that wants basic auth (AUTH_USER / AUTH_PASSWORD)."""
    if not available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("auth-registry")
    reg = LocalRegistry(root, htpasswd=write_htpasswd(root / "htpasswd", AUTH_USER,
                                                      AUTH_PASSWORD)).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def sigstore() -> LocalSigstore:
    return LocalSigstore("test")


@pytest.fixture(scope="module")
def trusted_root(sigstore: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sigstore.write_trusted_root(tmp_path_factory.mktemp("trust") / "trusted_root.json")
