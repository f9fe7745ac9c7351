"""A Sigstore of our own, offline: Fulcio-like CA, CT log and Rekor.

It issues short-lived code-signing certificates with an embedded SCT, logs
DSSE entries in a real RFC 6962 Merkle tree with a signed checkpoint and a
signed entry timestamp, and writes the TrustedRoot JSON that makes
sigstore-python accept exactly what it signed
(reference/oci-images-and-signing.md §3.3).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import struct
import time
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
IN_TOTO = "application/vnd.in-toto+json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return b"\x0c" + bytes([len(raw)]) + raw


def _der_octets(raw: bytes) -> bytes:
    n = len(raw)
    if n < 128:
        return b"\x04" + bytes([n]) + raw
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x04" + bytes([0x80 | len(length)]) + length + raw


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _node(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), leaf hashes given."""
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _ca_certificate(subject: x509.Name, key: Any, issuer: x509.Name, issuer_key: Any, *,
                    path_length: int) -> x509.Certificate:
    """A CA certificate for `key`, valid from a day ago for 30 days and signed by
    `issuer_key` (the same key for a self-signed root, which then has no
    authority key identifier)."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if issuer_key is not key:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


class LocalSigstore:
    def __init__(self, name: str = "local") -> None:
        self.name = name
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.inter_key = ec.generate_private_key(ec.SECP384R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_id = hashlib.sha256(spki(self.rekor_key)).digest()
        self.ct_id = hashlib.sha256(spki(self.ct_key)).digest()
        self.leaves: list[bytes] = []
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
        inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} intermediate")])
        self.root = _ca_certificate(root_name, self.root_key, root_name, self.root_key,
                                    path_length=1)
        self.intermediate = _ca_certificate(inter_name, self.inter_key, root_name,
                                            self.root_key, path_length=0)

    # -- trust root ---------------------------------------------------------------

    def trusted_root(self) -> dict[str, Any]:
        start = {"start": "2020-01-01T00:00:00Z"}

        def log(key: Any, key_id: bytes, url: str) -> dict[str, Any]:
            return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                    "publicKey": {"rawBytes": b64(spki(key)),
                                  "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": start},
                    "logId": {"keyId": b64(key_id)}}

        der = serialization.Encoding.DER
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_key, self.rekor_id, "http://127.0.0.1:9/rekor")],
            "certificateAuthorities": [{
                "subject": {"organization": self.name, "commonName": self.name},
                "uri": "http://127.0.0.1:9/fulcio",
                "certChain": {"certificates": [
                    {"rawBytes": b64(self.intermediate.public_bytes(der))},
                    {"rawBytes": b64(self.root.public_bytes(der))}]},
                "validFor": start}],
            "ctlogs": [log(self.ct_key, self.ct_id, "http://127.0.0.1:9/ct")],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root()))
        return path

    # -- "Fulcio" -----------------------------------------------------------------

    def issue(self, identity: str, issuer: str, key: Any, *,
              not_before: datetime.datetime | None = None) -> x509.Certificate:
        start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)

        def build(sct_list: bytes) -> x509.Certificate:
            return (
                x509.CertificateBuilder().subject_name(x509.Name([]))
                .issuer_name(self.intermediate.subject).public_key(key.public_key())
                .serial_number(serial).not_valid_before(start)
                .not_valid_after(start + datetime.timedelta(minutes=10))
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                               critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.inter_key.public_key()), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(identity)]
                                                           if "@" in identity else
                                                           [x509.UniformResourceIdentifier(
                                                               identity)]), critical=True)
                .add_extension(x509.UnrecognizedExtension(ISSUER_V1, issuer.encode()),
                               critical=False)
                .add_extension(x509.UnrecognizedExtension(ISSUER_V2, _der_utf8(issuer)),
                               critical=False)
                .add_extension(x509.UnrecognizedExtension(SCT_OID, _der_octets(sct_list)),
                               critical=False)
                .sign(self.inter_key, hashes.SHA384())
            )

        serial = x509.random_serial_number()
        placeholder = build(self._sct_list(b"\x00" * 8, 0))
        tbs = placeholder.tbs_precertificate_bytes
        ts_ms = int(time.time() * 1000)
        issuer_hash = hashlib.sha256(spki(self.inter_key)).digest()
        signed = (struct.pack("!BBQH", 0, 0, ts_ms, 1) + issuer_hash
                  + len(tbs).to_bytes(3, "big") + tbs + struct.pack("!H", 0))
        sig = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        cert = build(self._sct_list(sig, ts_ms))
        assert cert.tbs_precertificate_bytes == tbs
        return cert

    def _sct_list(self, sig: bytes, ts_ms: int) -> bytes:
        sct = (b"\x00" + self.ct_id + struct.pack("!Q", ts_ms) + struct.pack("!H", 0)
               + b"\x04\x03" + struct.pack("!H", len(sig)) + sig)
        return struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct

    # -- "Rekor" + signing ----------------------------------------------------------

    def sign_dsse(self, payload: bytes, identity: str, issuer: str, *,
                  payload_type: str = IN_TOTO, cert_not_before: datetime.datetime | None = None,
                  integrated_time: int | None = None) -> dict[str, Any]:
        """A bundle v0.3 with a DSSE envelope, logged in our Rekor."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(identity, issuer, key, not_before=cert_not_before)
        sig = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {"payload": b64(payload), "payloadType": payload_type,
                    "signatures": [{"sig": b64(sig), "keyid": ""}]}
        pem = cert.public_bytes(serialization.Encoding.PEM)
        body = rfc8785.dumps({
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {"envelopeHash": {"algorithm": "sha256",
                                      "value": hashlib.sha256(
                                          json.dumps(envelope).encode()).hexdigest()},
                     "payloadHash": {"algorithm": "sha256",
                                     "value": hashlib.sha256(payload).hexdigest()},
                     "signatures": [{"signature": b64(sig), "verifier": b64(pem)}]},
        })
        entry = self._log(body, "dsse", integrated_time)
        return {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [entry]},
            "dsseEnvelope": envelope,
        }

    def _log(self, body: bytes, kind: str, integrated_time: int | None) -> dict[str, Any]:
        index = len(self.leaves)
        self.leaves.append(_leaf(body))
        size = len(self.leaves)
        root = _mth(self.leaves)
        proof = _path(index, self.leaves)
        t = integrated_time if integrated_time is not None else int(time.time())
        note = f"{self.name}-rekor - 1\n{size}\n{b64(root)}\n"
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = note + "\n" + f"\u2014 {self.name}-rekor {b64(self.rekor_id[:4] + note_sig)}\n"
        set_payload = rfc8785.dumps({"body": b64(body), "integratedTime": t,
                                     "logID": self.rekor_id.hex(), "logIndex": index})
        set_sig = self.rekor_key.sign(set_payload, ec.ECDSA(hashes.SHA256()))
        return {
            "logIndex": str(index), "logId": {"keyId": b64(self.rekor_id)},
            "kindVersion": {"kind": kind, "version": "0.0.1"},
            "integratedTime": str(t),
            "inclusionPromise": {"signedEntryTimestamp": b64(set_sig)},
            "inclusionProof": {"logIndex": str(index), "rootHash": b64(root),
                               "treeSize": str(size), "hashes": [b64(h) for h in proof],
                               "checkpoint": {"envelope": checkpoint}},
            "canonicalizedBody": b64(body),
        }


def cosign_statement(digest: str, reference: str) -> bytes:
    """The in-toto statement cosign v3 signs for an image."""
    return json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": reference, "digest": {"sha256": digest.partition(":")[2]}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }).encode()
