"""Push test images and cosign-format signatures to a registry (test side)."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bpfman.images import oci, signing
from bpfman.images import spec as images
from bpfman.images.oci import Credentials, RegistryClient

EMPTY = "application/vnd.oci.empty.v1+json"


def client(host: str, creds: Credentials | None = None) -> RegistryClient:
    return RegistryClient(host, plain_http=True, credentials=creds, timeout=10)


async def push(host: str, repo: str, tag: str, image: images.BuiltImage,
               creds: Credentials | None = None) -> str:
    async with client(host, creds) as c:
        return await images.push_image(c, repo, tag, image)


async def push_docker(host: str, repo: str, tag: str, image: images.BuiltImage) -> str:
    """The same image with Docker v2 schema 2 media types."""
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST,
        "config": {"mediaType": oci.DOCKER_CONFIG, "digest": oci.sha256_digest(image.config),
                   "size": len(image.config)},
        "layers": [{"mediaType": oci.DOCKER_LAYER_GZIP, "digest": oci.sha256_digest(image.layer),
                    "size": len(image.layer)}],
    }).encode()
    async with client(host) as c:
        await c.push_blob(repo, image.config)
        await c.push_blob(repo, image.layer)
        return await c.put_manifest(repo, tag, manifest, oci.DOCKER_MANIFEST)


async def push_index(host: str, repo: str, tag: str,
                     per_platform: dict[tuple[str, str], images.BuiltImage]) -> str:
    entries = []
    async with client(host) as c:
        for (os_name, arch), image in per_platform.items():
            digest = await images.push_image(c, repo, f"{arch}-only", image)
            entries.append({"mediaType": oci.OCI_MANIFEST, "digest": digest,
                            "size": len(image.manifest),
                            "platform": {"os": os_name, "architecture": arch}})
        index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                            "manifests": entries}).encode()
        return await c.put_manifest(repo, tag, index, oci.OCI_INDEX)


def simple_signing_payload(digest: str, reference: str) -> bytes:
    return json.dumps({
        "critical": {"identity": {"docker-reference": reference},
                     "image": {"docker-manifest-digest": digest},
                     "type": "cosign container image signature"},
        "optional": None,
    }).encode()


async def attach_key_signature(host: str, repo: str, digest: str, key: ec.EllipticCurvePrivateKey,
                               *, payload: bytes | None = None,
                               tamper: bool = False) -> bytes:
    """`cosign sign --key`: a `.sig` manifest with one simple-signing layer."""
    payload = payload or simple_signing_payload(digest, f"{host}/{repo}")
    sig = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    if tamper:  # signature made, then the payload altered
        payload = payload.replace(b"cosign container", b"cosign  container")
    config = b"{}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": oci.sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": signing.SIMPLESIGNING, "digest": oci.sha256_digest(payload),
                    "size": len(payload),
                    "annotations": {signing.COSIGN_SIGNATURE: base64.b64encode(sig).decode()}}],
    }).encode()
    async with client(host) as c:
        await c.push_blob(repo, config)
        await c.push_blob(repo, payload)
        await c.put_manifest(repo, signing.signature_tag(digest, ".sig"), manifest,
                             oci.OCI_MANIFEST)
    return manifest


async def copy_manifest(host: str, repo: str, from_tag: str, to_tag: str) -> None:
    async with client(host) as c:
        m = await c.get_manifest(repo, from_tag)
        assert m is not None
        await c.put_manifest(repo, to_tag, m.raw, m.media_type)


async def attach_bundle(host: str, repo: str, digest: str, bundle: dict[str, Any],
                        *, subject_size: int = 0) -> str:
    """cosign v3: the bundle as an OCI referrer, listed in the tag-schema
    index ``sha256-<hex>`` (distribution 2.8 has no referrers API)."""
    data = json.dumps(bundle).encode()
    empty = b"{}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": signing.BUNDLE_V03,
        "config": {"mediaType": EMPTY, "digest": oci.sha256_digest(empty), "size": 2},
        "layers": [{"mediaType": signing.BUNDLE_V03, "digest": oci.sha256_digest(data),
                    "size": len(data)}],
        "subject": {"mediaType": oci.OCI_MANIFEST, "digest": digest, "size": subject_size},
    }).encode()
    tag = signing.signature_tag(digest)
    async with client(host) as c:
        await c.push_blob(repo, empty)
        await c.push_blob(repo, data)
        ref_digest = await c.put_manifest(repo, oci.sha256_digest(manifest), manifest,
                                          oci.OCI_MANIFEST)
        existing = await c.get_manifest(repo, tag, missing_ok=True)
        entries = existing.json()["manifests"] if existing is not None else []
        entries.append({"mediaType": oci.OCI_MANIFEST, "digest": ref_digest,
                        "size": len(manifest), "artifactType": signing.BUNDLE_V03})
        index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                            "manifests": entries}).encode()
        await c.put_manifest(repo, tag, index, oci.OCI_INDEX)
    return ref_digest
