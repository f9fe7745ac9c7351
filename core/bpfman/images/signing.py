"""Cosign signature verification of bytecode images, fully offline.

Two formats verify (reference/oci-images-and-signing.md §3.4):

* **Keyless, cosign v3 bundles**: a Sigstore bundle v0.3 holding a DSSE
  in-toto statement whose subject is the image digest, stored as an OCI
  referrer of the image (the referrers API, or the tag ``sha256-<hex>`` when
  the registry has none). Verified by sigstore-python against the configured
  trust root file (or its embedded public-good root), never fetching anything,
  then checked against the trusted identities (exact or regex, with issuer).
* **Key-based, cosign ``--key``**: the ``sha256-<hex>.sig`` tag whose
  simple-signing layers carry an ECDSA/RSA/Ed25519 signature annotation;
  verified with `cryptography` against the configured public keys.

Not verifiable: legacy cosign keyless ``.sig`` signatures (certificate plus a
Rekor SET, no inclusion proof): sigstore-python requires an inclusion proof.
Such a signature counts as present and unverifiable, so it is rejected.

Policy (as upstream bpfman): ``verify_enabled = false`` skips everything;
``allow_unsigned`` forgives only the absence of any signature. A signature
that is present but does not verify is always a `SignatureRejected`.
Collection (network) and verification (CPU only) are separate so that the
verification is plain, testable code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from bpfman.images.oci import OCI_INDEX, RegistryClient
from bpfman.model.errors import SignatureRejected

log = logging.getLogger("bpfman.signing")

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
COSIGN_CERTIFICATE = "dev.sigstore.cosign/certificate"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
COSIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
MAX_SIGNATURE_BYTES = 1 << 20
_OIDC_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
_OIDC_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"


@attrs.frozen
class TrustedIdentity:
    """One acceptable keyless signer; the fields are ANDed, entries ORed.
    Regexps are anchored (fullmatch), as cosign's are."""

    certificate_identity: str | None = None
    certificate_identity_regexp: str | None = None
    certificate_oidc_issuer: str | None = None
    certificate_oidc_issuer_regexp: str | None = None

    def __attrs_post_init__(self) -> None:
        for pattern in (self.certificate_identity_regexp, self.certificate_oidc_issuer_regexp):
            if pattern is not None:
                re.compile(pattern)  # a bad regexp is a config error at startup


@attrs.frozen
class SigningConfig:
    """``[signing]`` (bpfman's two switches plus what makes them meaningful)."""

    verify_enabled: bool = True
    allow_unsigned: bool = True
    #: Sigstore TrustedRoot JSON; None = sigstore-python's embedded public-good root
    trusted_root: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path))
    #: PEM public keys for key-based (cosign --key) signatures
    public_keys: list[Path] = attrs.field(factory=list, converter=lambda v: [Path(p) for p in v])
    #: empty = any identity the trust root vouches for (upstream's behaviour)
    trusted_identities: list[TrustedIdentity] = attrs.field(factory=list)


# -- what a registry holds about one digest -----------------------------------


@attrs.frozen
class KeySignature:
    payload: bytes
    signature: bytes
    has_certificate: bool  # legacy keyless: not verifiable, see module doc


@attrs.frozen
class BundleSignature:
    bundle_json: bytes


@attrs.frozen
class Evidence:
    """Every signature artifact found for `digest` (empty = unsigned)."""

    digest: str
    key_signatures: tuple[KeySignature, ...] = ()
    bundles: tuple[BundleSignature, ...] = ()
    problems: tuple[str, ...] = ()  # malformed artifacts: they count as bad signatures

    @property
    def unsigned(self) -> bool:
        return not (self.key_signatures or self.bundles or self.problems)


def signature_tag(digest: str, suffix: str = "") -> str:
    return digest.replace(":", "-") + suffix


async def collect(client: RegistryClient, repo: str, digest: str) -> Evidence:
    """Fetch the cosign `.sig` manifest and the bundle referrers of `digest`."""
    keys: list[KeySignature] = []
    bundles: list[BundleSignature] = []
    problems: list[str] = []
    sig = await client.get_manifest(repo, signature_tag(digest, ".sig"), missing_ok=True)
    if sig is not None:
        for layer in sig.json().get("layers") or []:
            if layer.get("mediaType") != SIMPLESIGNING:
                continue
            annotations = layer.get("annotations") or {}
            try:
                raw_sig = base64.b64decode(annotations[COSIGN_SIGNATURE], validate=True)
            except (KeyError, ValueError):
                problems.append(f"signature layer {layer.get('digest')} has no valid signature")
                continue
            payload = await client.get_blob(repo, layer["digest"], limit=MAX_SIGNATURE_BYTES)
            keys.append(KeySignature(payload, raw_sig, COSIGN_CERTIFICATE in annotations))
    index = await client.get_referrers(repo, digest)
    if index is None:  # no referrers API: the tag schema fallback
        tagged = await client.get_manifest(repo, signature_tag(digest), missing_ok=True)
        index = tagged.json() if tagged is not None and tagged.media_type == OCI_INDEX else None
    for entry in (index or {}).get("manifests") or []:
        if entry.get("artifactType") != BUNDLE_V03:
            continue
        manifest = await client.get_manifest(repo, entry["digest"])
        assert manifest is not None
        body = manifest.json()
        if (body.get("subject") or {}).get("digest") != digest:
            continue  # a referrer of something else: not evidence about this image
        for layer in body.get("layers") or []:
            data = await client.get_blob(repo, layer["digest"], limit=MAX_SIGNATURE_BYTES)
            bundles.append(BundleSignature(data))
    return Evidence(digest, tuple(keys), tuple(bundles), tuple(problems))


# -- verification (no I/O besides reading configured files) -----------------------


@attrs.frozen
class Verdict:
    """What verification concluded, recorded with the cache entry."""

    status: str  # "verified" | "unsigned_allowed" | "disabled"
    signer: str | None = None
    digest: str | None = None


class Verifier:
    """The configured policy, with keys and trust root loaded once."""

    def __init__(self, config: SigningConfig) -> None:
        self.config = config
        self._keys = [_load_public_key(p) for p in config.public_keys]
        self._sigstore: Any = None  # built on first keyless check (0.4 s import)
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        """Changes whenever the policy does (settings, key and trust root
        contents): a cached verdict is only reused under the policy that
        produced it."""
        if self._fingerprint is None:
            material = [json.dumps(attrs.asdict(self.config), sort_keys=True, default=str)]
            material += [key.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).hex()
                         for _path, key in self._keys]
            root = self.config.trusted_root
            if root is not None:
                try:
                    material.append(hashlib.sha256(root.read_bytes()).hexdigest())
                except OSError:
                    material.append("unreadable")
            self._fingerprint = hashlib.sha256("\n".join(material).encode()).hexdigest()
        return self._fingerprint

    def verify(self, evidence: Evidence) -> Verdict:
        c = self.config
        if not c.verify_enabled:
            return Verdict("disabled")
        if evidence.unsigned:
            if c.allow_unsigned:
                log.warning("image %s is unsigned; accepted because allow_unsigned = true",
                            evidence.digest)
                return Verdict("unsigned_allowed", digest=evidence.digest)
            raise SignatureRejected(
                f"image {evidence.digest} is not signed and allow_unsigned = false",
                reason="unsigned", digest=evidence.digest)
        failures = list(evidence.problems)
        for ks in evidence.key_signatures:
            try:
                return Verdict("verified", self._verify_key(ks, evidence.digest), evidence.digest)
            except _Invalid as exc:
                failures.append(str(exc))
        for bs in evidence.bundles:
            try:
                signer = self._verify_bundle(bs, evidence.digest)
                return Verdict("verified", signer, evidence.digest)
            except _Invalid as exc:
                failures.append(str(exc))
        raise SignatureRejected(
            f"image {evidence.digest} has signatures but none verifies: " + "; ".join(failures),
            reason="invalid_signature", digest=evidence.digest, failures=failures)

    def _verify_key(self, ks: KeySignature, digest: str) -> str:
        if ks.has_certificate:
            raise _Invalid("legacy cosign keyless signature (certificate + SET): not"
                           " verifiable here; re-sign with a cosign v3 bundle")
        if not self._keys:
            raise _Invalid("key-based signature but no public_keys configured")
        for path, key in self._keys:
            if _check_signature(key, ks.signature, ks.payload):
                _check_simple_signing(ks.payload, digest)
                return f"key {path}"
        raise _Invalid("no configured public key verifies the signature")

    def _verify_bundle(self, bs: BundleSignature, digest: str) -> str:
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle

        verifier, policy = self._keyless()
        try:
            bundle = Bundle.from_json(bs.bundle_json)
            payload_type, payload = verifier.verify_dsse(bundle, policy)
        except SigstoreError as exc:
            raise _Invalid(f"bundle: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            raise _Invalid(f"bundle: malformed: {exc}") from None
        if payload_type != IN_TOTO:
            raise _Invalid(f"bundle: payload type {payload_type!r}, expected {IN_TOTO}")
        try:
            statement = json.loads(payload)
        except ValueError:
            raise _Invalid("bundle: statement is not JSON") from None
        if statement.get("predicateType") != COSIGN_PREDICATE:
            raise _Invalid(f"bundle: predicate {statement.get('predicateType')!r}")
        hexdigest = digest.partition(":")[2]
        if not any((s.get("digest") or {}).get("sha256") == hexdigest
                   for s in statement.get("subject") or []):
            raise _Invalid("bundle: statement subject is not this image digest")
        return "keyless " + ", ".join(_identities(bundle.signing_certificate))

    def _keyless(self) -> tuple[Any, Any]:
        if self._sigstore is None:
            from sigstore.models import TrustedRoot
            from sigstore.verify import Verifier as SigstoreVerifier
            from sigstore.verify import policy

            root = self.config.trusted_root
            verifier = (SigstoreVerifier(trusted_root=TrustedRoot.from_file(str(root)))
                        if root is not None else SigstoreVerifier.production(offline=True))
            ids = self.config.trusted_identities
            # UnsafeNoOp still checks chain, SCT, log and signature; only identity is open.
            pol = AnyIdentity(ids) if ids else policy.UnsafeNoOp()
            self._sigstore = (verifier, pol)
        return self._sigstore

    def check_trust_root(self) -> None:
        """Parse the trust root now (at startup: a bad file is a config error)."""
        if self.config.trusted_root is not None and self.config.verify_enabled:
            self._keyless()


class _Invalid(Exception):
    """One signature failed; the reasons are collected into SignatureRejected."""


class AnyIdentity:
    """Like sigstore's AnyOf, but the error says why each identity failed."""

    def __init__(self, identities: list[TrustedIdentity]) -> None:
        self.children = [IdentityPolicy(i) for i in identities]

    def verify(self, cert: Any) -> None:
        from sigstore.errors import VerificationError

        reasons = []
        for child in self.children:
            try:
                child.verify(cert)
                return
            except VerificationError as exc:
                reasons.append(str(exc))
        raise VerificationError("untrusted signer: " + "; ".join(reasons))


class IdentityPolicy:
    """A sigstore verification policy for one `TrustedIdentity` (exact or regex)."""

    def __init__(self, ident: TrustedIdentity) -> None:
        self.ident = ident

    def verify(self, cert: Any) -> None:
        from sigstore.errors import VerificationError

        i = self.ident
        sans = _identities(cert)
        issuer = _issuer(cert)
        if i.certificate_identity is not None and i.certificate_identity not in sans:
            raise VerificationError(f"identity {sans} is not {i.certificate_identity}")
        if i.certificate_identity_regexp is not None and not any(
                re.fullmatch(i.certificate_identity_regexp, s) for s in sans):
            raise VerificationError(
                f"identity {sans} does not match {i.certificate_identity_regexp}")
        if i.certificate_oidc_issuer is not None and issuer != i.certificate_oidc_issuer:
            raise VerificationError(f"issuer {issuer!r} is not {i.certificate_oidc_issuer}")
        if i.certificate_oidc_issuer_regexp is not None and not (
                issuer and re.fullmatch(i.certificate_oidc_issuer_regexp, issuer)):
            raise VerificationError(
                f"issuer {issuer!r} does not match {i.certificate_oidc_issuer_regexp}")


def _identities(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.RFC822Name),
            *san.get_values_for_type(x509.UniformResourceIdentifier)]


def _issuer(cert: Any) -> str | None:
    from cryptography import x509

    for oid in (_OIDC_ISSUER_V2, _OIDC_ISSUER_V1):
        try:
            raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except x509.ExtensionNotFound:
            continue
        if oid == _OIDC_ISSUER_V2 and raw[:1] == b"\x0c":  # DER UTF8String
            length, start = raw[1], 2
            if length & 0x80:
                n = length & 0x7F
                length, start = int.from_bytes(raw[2:2 + n], "big"), 2 + n
            return raw[start:start + length].decode()
        return raw.decode()
    return None


def _load_public_key(path: Path) -> tuple[Path, Any]:
    try:
        return path, serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"signing public key {path}: {exc}") from None


def _check_signature(key: Any, signature: bytes, payload: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, payload)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _check_simple_signing(payload: bytes, digest: str) -> None:
    """The signed payload must name this exact digest (no replay from another image)."""
    try:
        critical = json.loads(payload)["critical"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        kind = critical["type"]
    except (ValueError, KeyError, TypeError):
        raise _Invalid("signed payload is not a cosign simple-signing document") from None
    if kind != "cosign container image signature":
        raise _Invalid(f"signed payload has type {kind!r}")
    if signed_digest != digest:
        raise _Invalid(f"payload digest mismatch: signature is for {signed_digest}")
