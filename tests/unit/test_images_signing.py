"""Signature policy with real signatures: cosign key-based (ECDSA P-256) and
keyless bundles from a Sigstore built here (own CA, CT log, Rekor). Offline."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from images.fixtures import sigstore, trusted_root  # noqa: F401
from images.publish import simple_signing_payload
from images.sigstore_local import LocalSigstore, cosign_statement

from bpfman.images.signing import (
    BundleSignature,
    Evidence,
    KeySignature,
    SigningConfig,
    TrustedIdentity,
    Verifier,
)
from bpfman.model.errors import SignatureRejected

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
ID, ISSUER = "dev@example.com", "https://issuer.example"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _key_sig(key: ec.EllipticCurvePrivateKey, digest: str = DIGEST) -> KeySignature:
    payload = simple_signing_payload(digest, "r/x")
    return KeySignature(payload, key.sign(payload, ec.ECDSA(hashes.SHA256())), False)


def _reject(verifier: Verifier, evidence: Evidence) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as err:
        verifier.verify(evidence)
    assert err.value.code == 3002
    return err.value


def test_key_based(key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    v = Verifier(SigningConfig(allow_unsigned=False, public_keys=[_pem(key, tmp_path / "k")]))
    verdict = v.verify(Evidence(DIGEST, key_signatures=(_key_sig(key),)))
    assert verdict.status == "verified" and verdict.signer.startswith("key ")

    wrong = ec.generate_private_key(ec.SECP256R1())
    err = _reject(v, Evidence(DIGEST, key_signatures=(_key_sig(wrong),)))
    assert err.details["reason"] == "invalid_signature"
    assert "no configured public key" in err.details["failures"][0]

    # A valid signature of another image, replayed onto this digest.
    err = _reject(v, Evidence(DIGEST, key_signatures=(_key_sig(key, OTHER),)))
    assert "payload digest mismatch" in err.message

    good = _key_sig(key)
    tampered = KeySignature(good.payload.replace(b"r/x", b"r/y"), good.signature, False)
    _reject(v, Evidence(DIGEST, key_signatures=(tampered,)))


def test_unsigned_and_allow_unsigned(key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    pem = _pem(key, tmp_path / "k")
    strict = Verifier(SigningConfig(allow_unsigned=False, public_keys=[pem]))
    lenient = Verifier(SigningConfig(allow_unsigned=True, public_keys=[pem]))
    assert _reject(strict, Evidence(DIGEST)).details["reason"] == "unsigned"
    assert lenient.verify(Evidence(DIGEST)).status == "unsigned_allowed"
    # allow_unsigned forgives a missing signature, never a bad one.
    bad = _key_sig(ec.generate_private_key(ec.SECP256R1()))
    assert _reject(lenient, Evidence(DIGEST, key_signatures=(bad,))).details["reason"] == (
        "invalid_signature")
    # A key-based signature with no key configured cannot pass either.
    _reject(Verifier(SigningConfig()), Evidence(DIGEST, key_signatures=(_key_sig(key),)))
    # Legacy keyless (certificate + SET) is not verifiable: rejected, not ignored.
    legacy = KeySignature(_key_sig(key).payload, _key_sig(key).signature, True)
    assert "legacy cosign keyless" in _reject(
        lenient, Evidence(DIGEST, key_signatures=(legacy,))).message
    assert Verifier(SigningConfig(verify_enabled=False)).verify(
        Evidence(DIGEST, key_signatures=(bad,))).status == "disabled"


def _bundle(ls: LocalSigstore, digest: str = DIGEST, identity: str = ID,
            issuer: str = ISSUER, **kw: object) -> BundleSignature:
    b = ls.sign_dsse(cosign_statement(digest, "r/x"), identity, issuer, **kw)  # type: ignore[arg-type]
    return BundleSignature(json.dumps(b).encode())


def _keyless(root: Path, *ids: TrustedIdentity, allow_unsigned: bool = False) -> Verifier:
    return Verifier(SigningConfig(allow_unsigned=allow_unsigned, trusted_root=root,
                                  trusted_identities=list(ids)))


def test_keyless_bundle(sigstore: LocalSigstore, trusted_root: Path) -> None:  # noqa: F811
    exact = TrustedIdentity(certificate_identity=ID, certificate_oidc_issuer=ISSUER)
    verdict = _keyless(trusted_root, exact).verify(Evidence(DIGEST, bundles=(_bundle(sigstore),)))
    assert verdict == verdict.__class__("verified", f"keyless {ID}", DIGEST)
    regex = TrustedIdentity(certificate_identity_regexp=r".*@example\.com",
                            certificate_oidc_issuer_regexp=r"https://issuer\..*")
    assert _keyless(trusted_root, regex).verify(
        Evidence(DIGEST, bundles=(_bundle(sigstore),))).status == "verified"
    # No identities configured: any signer the trust root vouches for.
    assert _keyless(trusted_root).verify(
        Evidence(DIGEST, bundles=(_bundle(sigstore, identity="x@y.z"),))).status == "verified"


def test_keyless_negative_cases(sigstore: LocalSigstore, trusted_root: Path,  # noqa: F811
                                tmp_path: Path) -> None:
    exact = TrustedIdentity(certificate_identity=ID, certificate_oidc_issuer=ISSUER)
    v = _keyless(trusted_root, exact, allow_unsigned=True)
    cases = {
        "wrong identity": _bundle(sigstore, identity="mallory@example.com"),
        "wrong issuer": _bundle(sigstore, issuer="https://evil.example"),
        "other digest": _bundle(sigstore, digest=OTHER),
        "other trust root": _bundle(LocalSigstore("other")),
        "expired at signing": _bundle(
            sigstore, cert_not_before=datetime.datetime.now(datetime.UTC)
            - datetime.timedelta(hours=2)),
    }
    good = json.loads(_bundle(sigstore).bundle_json)
    envelope = good["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "ee" * 32
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    cases["tampered payload"] = BundleSignature(json.dumps(good).encode())
    regex = _keyless(trusted_root, TrustedIdentity(certificate_identity_regexp="dev@example"))
    expected = {"wrong identity": "untrusted signer: identity ['mallory@example.com']",
                "wrong issuer": "untrusted signer: issuer 'https://evil.example'",
                "other digest": "statement subject is not this image digest",
                "other trust root": "CertValidationError", "expired at signing": "not valid at",
                "tampered payload": "DSSE"}
    for what, bundle in cases.items():
        err = _reject(v, Evidence(DIGEST, bundles=(bundle,)))
        assert err.details["reason"] == "invalid_signature", what
        assert expected[what] in err.details["failures"][0], (what, err.details)
    # Regexps are anchored: "dev@example" does not match "dev@example.com".
    _reject(regex, Evidence(DIGEST, bundles=(_bundle(sigstore),)))
    _reject(v, Evidence(DIGEST, bundles=(BundleSignature(b"{not json"),)))


def test_no_network_at_startup_or_verification(sigstore: LocalSigstore,  # noqa: F811
                                               trusted_root: Path,  # noqa: F811
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the service (trust root, keys) and verifying, with the
    embedded public-good root too, never opens a connection."""
    import socket

    from bpfman.images.config import ImagesConfig
    from bpfman.images.service import ImageService

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    svc = ImageService(ImagesConfig(), SigningConfig(trusted_root=trusted_root), tmp_path)
    assert svc.verifier.verify(Evidence(DIGEST, bundles=(_bundle(sigstore),))).status == (
        "verified")
    public_good = Verifier(SigningConfig())  # embedded root, offline
    err = _reject(public_good, Evidence(DIGEST, bundles=(_bundle(sigstore),)))
    assert "CertValidationError" in err.details["failures"][0]
