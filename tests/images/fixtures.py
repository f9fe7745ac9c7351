"""pytest fixtures: import them into a test module to use them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from images.registry import LocalRegistry, available, write_htpasswd
from images.sigstore_local import LocalSigstore

AUTH_USER, AUTH_PASSWORD = "ci", "s3cret-pw"
CosignKey = tuple[ec.EllipticCurvePrivateKey, Path]  # the private key, its public PEM file


@contextmanager
def _running_registry(root: Path, htpasswd: Path | None = None) -> Iterator[LocalRegistry]:
    """A registry started in `root`, stopped on exit; the test is skipped where
    docker-registry is not installed."""
    if not available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry;"
                    " scripts/setup.sh installs it)")
    reg = LocalRegistry(root, htpasswd=htpasswd).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A fresh anonymous registry on 127.0.0.1 for the module."""
    with _running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A registry that wants basic auth (AUTH_USER / AUTH_PASSWORD)."""
    root = tmp_path_factory.mktemp("auth-registry")
    htpasswd = write_htpasswd(root / "htpasswd", AUTH_USER, AUTH_PASSWORD)
    with _running_registry(root, htpasswd) as reg:
        yield reg


@pytest.fixture(scope="module")
def cosign_key(tmp_path_factory: pytest.TempPathFactory) -> CosignKey:
    """A cosign signing key and its public key as a PEM file (`cosign.pub`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path_factory.mktemp("cosign") / "cosign.pub"
    pem.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pem


@pytest.fixture(scope="module")
def sigstore() -> LocalSigstore:
    return LocalSigstore("test")


@pytest.fixture(scope="module")
def trusted_root(sigstore: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sigstore.write_trusted_root(tmp_path_factory.mktemp("trust") / "trusted_root.json")
