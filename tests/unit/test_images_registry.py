"""Pulls against a real registry (Debian's docker-registry on 127.0.0.1):
policies, cache verification, multi-arch, Docker v2, auth, signatures."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec
from images.fixtures import (  # noqa: F401
    AUTH_PASSWORD,
    AUTH_USER,
    CosignKey,
    auth_registry,
    cosign_key,
    registry,
    sigstore,
    trusted_root,
)
from images.publish import (
    attach_bundle,
    attach_key_signature,
    copy_manifest,
    push,
    push_docker,
    push_index,
)
from images.registry import LocalRegistry
from images.sigstore_local import LocalSigstore, cosign_statement

from bpfman.images import oci
from bpfman.images import spec as images
from bpfman.images.config import ImagesConfig, RegistryConfig
from bpfman.images.service import ImageService
from bpfman.images.signing import SigningConfig, TrustedIdentity
from bpfman.model.errors import (
    ImageError,
    ImageNotFound,
    InvalidArgument,
    PullFailed,
    SignatureRejected,
)
from bpfman.model.requests import ImageSource

HOST_PLATFORM = oci.host_platform()


@pytest.fixture(scope="module")
def obj(bpf_program: Callable[..., Path]) -> bytes:
    return bpf_program("tp_counter").read_bytes()


@pytest.fixture(scope="module")
def labels(bpf_program: Callable[..., Path]) -> images.Labels:
    return images.labels_for_object(bpf_program("tp_counter"))


def service(tmp_path: Path, reg: LocalRegistry, signing: SigningConfig | None = None,
            **registry_kw: object) -> ImageService:
    config = ImagesConfig(registries=[RegistryConfig(reg.host, plain_http=True, **registry_kw)],
                          timeout_seconds=5)
    return ImageService(config, signing or SigningConfig(verify_enabled=False), tmp_path)


def cache_files(svc: ImageService) -> list[str]:
    root = svc.cache.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_pull_policies_and_cache(tmp_path: Path, obj: bytes, labels: images.Labels,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    reg = LocalRegistry(tmp_path_factory.mktemp("own-registry")).start()
    try:
        svc = service(tmp_path, reg)
        url = f"{reg.host}/bytecode/tp:v1"
        with pytest.raises(ImageNotFound) as err:  # Never, empty cache
            await svc.ensure(url, "Never")
        assert err.value.details["reason"] == "not_cached" and err.value.code == 1100
        first = images.build_image(obj, labels)
        digest = await push(reg.host, "bytecode/tp", "v1", first)
        entry = await svc.ensure(url, "IfNotPresent")
        assert entry.digest == digest and entry.programs == labels.programs
        assert entry.verification == "disabled"
        assert [e.url for e in svc.cache.list()] == [url]
        # The tag moves: IfNotPresent keeps the cached digest, Always follows the tag.
        second = images.build_image(obj + b"\0" * 8, labels)
        moved = await push(reg.host, "bytecode/tp", "v1", second)
        assert (await svc.ensure(url, "IfNotPresent")).digest == digest
        assert (await svc.ensure(url, "Always")).digest == moved
        # Pinned by digest: satisfied from the cache by digest.
        assert (await svc.ensure(f"{reg.host}/bytecode/tp@{moved}", "Never")).digest == moved
    finally:
        reg.stop()
    # Registry gone: the cache still serves IfNotPresent/Never, Always fails precisely.
    assert (await svc.ensure(url, "IfNotPresent")).digest == moved
    with pytest.raises(PullFailed) as err:
        await svc.ensure(url, "Always")
    assert err.value.details["reason"] == "unreachable" and err.value.code == 3001
    assert err.value.details["url"].startswith(f"http://{reg.host}/v2/bytecode/tp/manifests/")


async def test_cache_corruption_is_detected(tmp_path: Path, registry: LocalRegistry,  # noqa: F811
                                            obj: bytes, labels: images.Labels) -> None:
    svc = service(tmp_path, registry)
    await push(registry.host, "bytecode/corrupt", "v1", images.build_image(obj, labels))
    url = f"{registry.host}/bytecode/corrupt:v1"
    entry = await svc.ensure(url, "IfNotPresent")
    src = ImageSource(url, "Never")
    path = svc.object_for_load(src, ["count_getpid"])
    assert path.read_bytes() == obj
    with pytest.raises(InvalidArgument) as err:
        svc.object_for_load(src, ["count_getpid", "nope"])
    assert err.value.details["reason"] == "program_not_in_image"

    layer = svc.cache.blobs / entry.layer_digest.partition(":")[2]
    layer.write_bytes(layer.read_bytes()[:-1] + b"X")
    with pytest.raises(ImageError) as ierr:
        svc.object_for_load(src, ["count_getpid"])
    assert ierr.value.details["reason"] == "cache_corrupted"
    assert svc.cache.list() == []  # the entry is gone: Never now fails, a pull repairs
    with pytest.raises(ImageNotFound):
        await svc.ensure(url, "Never")
    await svc.ensure(url, "IfNotPresent")
    assert svc.object_for_load(src, ["count_getpid"]).read_bytes() == obj


async def test_multi_arch_index_and_docker_v2(tmp_path: Path, registry: LocalRegistry,  # noqa: F811
                                              obj: bytes, labels: images.Labels) -> None:
    svc = service(tmp_path, registry)
    other = ("linux", "s390x" if HOST_PLATFORM[1] != "s390x" else "arm64")
    host_image = images.build_image(obj, labels, platform=HOST_PLATFORM)
    foreign = images.build_image(obj, images.Labels({"foreign": "xdp"}, {}), platform=other)
    index = await push_index(registry.host, "bytecode/multi", "v1",
                             {other: foreign, HOST_PLATFORM: host_image})
    entry = await svc.ensure(f"{registry.host}/bytecode/multi:v1", "Always")
    assert entry.digest == index and entry.manifest_digest == host_image.digest
    assert entry.programs == labels.programs

    await push_index(registry.host, "bytecode/multi", "foreign-only", {other: foreign})
    with pytest.raises(PullFailed) as err:
        await svc.ensure(f"{registry.host}/bytecode/multi:foreign-only", "Always")
    assert err.value.details["reason"] == "no_matching_platform"

    docker = await push_docker(registry.host, "bytecode/docker", "v1", host_image)
    entry = await svc.ensure(f"{registry.host}/bytecode/docker:v1", "Always")
    assert entry.digest == docker and entry.programs == labels.programs


async def test_not_a_bytecode_image_leaves_nothing(tmp_path: Path, registry: LocalRegistry,  # noqa: F811
                                                   obj: bytes) -> None:
    svc = service(tmp_path, registry)
    plain = images.build_image(obj, images.Labels({}, {}))
    config = json.loads(plain.config)
    config["config"]["Labels"] = {"org.opencontainers.image.title": "x"}
    raw_config = json.dumps(config).encode()
    manifest = json.loads(plain.manifest)
    manifest["config"]["digest"] = oci.sha256_digest(raw_config)
    manifest["config"]["size"] = len(raw_config)
    image = images.BuiltImage(raw_config, plain.layer, json.dumps(manifest).encode())
    await push(registry.host, "bytecode/unlabelled", "v1", image)
    with pytest.raises(ImageError) as err:
        await svc.ensure(f"{registry.host}/bytecode/unlabelled:v1", "Always")
    assert err.value.details["reason"] == "missing_labels"
    assert cache_files(svc) == []


async def test_basic_auth(tmp_path: Path, auth_registry: LocalRegistry,  # noqa: F811
                          obj: bytes, labels: images.Labels) -> None:
    creds = oci.Credentials(AUTH_USER, AUTH_PASSWORD)
    with pytest.raises(PullFailed) as err:
        await push(auth_registry.host, "private/tp", "v1", images.build_image(obj, labels))
    assert err.value.details["reason"] == "unauthorized"
    await push(auth_registry.host, "private/tp", "v1", images.build_image(obj, labels), creds)
    url = f"{auth_registry.host}/private/tp:v1"

    anonymous = service(tmp_path / "a", auth_registry)
    with pytest.raises(PullFailed) as err:
        await anonymous.ensure(url, "Always")
    assert err.value.details["status"] == 401
    # Credentials of the request, used once and never written anywhere.
    entry = await anonymous.ensure(url, "Always", AUTH_USER, AUTH_PASSWORD)
    assert entry.programs == labels.programs
    # Credentials from the config: a user name and a password file.
    pw = tmp_path / "pw"
    pw.write_text(AUTH_PASSWORD + "\n")
    configured = service(tmp_path / "c", auth_registry, username=AUTH_USER, password_file=pw)
    assert (await configured.ensure(url, "Always")).digest == entry.digest
    for svc in (anonymous, configured):
        for f in svc.cache.root.rglob("*"):
            assert not f.is_file() or AUTH_PASSWORD.encode() not in f.read_bytes()


async def test_digest_mismatch_from_a_lying_registry(obj: bytes) -> None:
    good = b'{"mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    claimed = oci.sha256_digest(b"something else")

    def lie(request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path:
            return httpx.Response(200, content=b"tampered blob")
        return httpx.Response(200, content=good, headers={"Docker-Content-Digest": claimed})

    async with oci.RegistryClient("lying.example", transport=httpx.MockTransport(lie)) as c:
        with pytest.raises(PullFailed) as err:
            await c.get_manifest("r", "latest")
        assert err.value.details["reason"] == "digest_mismatch"
        assert err.value.details["expected"] == claimed
        with pytest.raises(PullFailed) as err:
            await c.get_manifest("r", claimed)
        assert err.value.details["reason"] == "digest_mismatch"
        with pytest.raises(PullFailed) as err:
            await c.get_blob("r", oci.sha256_digest(obj), limit=1 << 20)
        assert err.value.details["actual"] == oci.sha256_digest(b"tampered blob")


async def test_timeouts_and_cancellation() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(30)
        return httpx.Response(200)

    async with oci.RegistryClient("slow.example", transport=httpx.MockTransport(slow)) as c:
        with trio.move_on_after(0.2) as scope:
            await c.get_manifest("r", "latest")
        assert scope.cancelled_caught


# -- signatures through the registry -------------------------------------------------


async def test_key_based_signatures_via_registry(
        tmp_path: Path, registry: LocalRegistry, obj: bytes,  # noqa: F811
        labels: images.Labels, cosign_key: CosignKey) -> None:  # noqa: F811
    key, pem = cosign_key
    strict = service(tmp_path, registry, SigningConfig(allow_unsigned=False, public_keys=[pem]))
    signed = await push(registry.host, "signed/key", "v1", images.build_image(obj, labels))
    await attach_key_signature(registry.host, "signed/key", signed, key)
    entry = await strict.ensure(f"{registry.host}/signed/key:v1", "Always")
    assert (entry.verification, entry.signer) == ("verified", f"key {pem}")

    unsigned = images.build_image(obj + b"\0" * 4, labels)
    udigest = await push(registry.host, "signed/key", "unsigned", unsigned)
    with pytest.raises(SignatureRejected) as err:
        await strict.ensure(f"{registry.host}/signed/key:unsigned", "Always")
    assert err.value.details["reason"] == "unsigned"
    lenient = service(tmp_path / "l", registry,
                      SigningConfig(allow_unsigned=True, public_keys=[pem]))
    assert (await lenient.ensure(f"{registry.host}/signed/key:unsigned", "Always")
            ).verification == "unsigned_allowed"

    # Replay: the .sig of the signed image copied onto the unsigned one.
    await copy_manifest(registry.host, "signed/key", signed.replace(":", "-") + ".sig",
                        udigest.replace(":", "-") + ".sig")
    for svc in (strict, lenient):
        with pytest.raises(SignatureRejected) as err:
            await svc.ensure(f"{registry.host}/signed/key:unsigned", "Always")
        assert "payload digest mismatch" in err.value.message
    # Wrong key, tampered payload.
    other = await push(registry.host, "signed/key", "wrong", images.build_image(obj + b"1", labels))
    await attach_key_signature(registry.host, "signed/key", other,
                               ec.generate_private_key(ec.SECP256R1()))
    tampered = await push(registry.host, "signed/key", "tampered",
                          images.build_image(obj + b"2", labels))
    await attach_key_signature(registry.host, "signed/key", tampered, key, tamper=True)
    before = cache_files(strict)
    for tag in ("wrong", "tampered"):
        with pytest.raises(SignatureRejected):
            await strict.ensure(f"{registry.host}/signed/key:{tag}", "Always")
    assert cache_files(strict) == before  # a rejected pull leaves nothing behind


async def test_keyless_bundles_via_registry(
        tmp_path: Path, registry: LocalRegistry, obj: bytes,  # noqa: F811
        labels: images.Labels, sigstore: LocalSigstore,  # noqa: F811
        trusted_root: Path) -> None:  # noqa: F811
    ident = TrustedIdentity(certificate_identity="ci@example.com",
                            certificate_oidc_issuer="https://issuer.example")
    svc = service(tmp_path, registry, SigningConfig(
        allow_unsigned=False, trusted_root=trusted_root, trusted_identities=[ident]))
    repo = "signed/keyless"
    digest = await push(registry.host, repo, "v1", images.build_image(obj, labels))
    ref = f"{registry.host}/{repo}"
    await attach_bundle(registry.host, repo, digest, sigstore.sign_dsse(
        cosign_statement(digest, ref), "ci@example.com", "https://issuer.example"))
    entry = await svc.ensure(f"{ref}:v1", "Always")
    assert (entry.verification, entry.signer) == ("verified", "keyless ci@example.com")

    bad = {
        "identity": sigstore.sign_dsse(cosign_statement("{d}", ref), "eve@example.com",
                                       "https://issuer.example"),
        "root": LocalSigstore("other").sign_dsse(cosign_statement("{d}", ref),
                                                 "ci@example.com", "https://issuer.example"),
    }
    for n, (what, _) in enumerate(bad.items()):
        d = await push(registry.host, repo, what, images.build_image(obj + bytes([n]), labels))
        bundle = (sigstore if what == "identity" else LocalSigstore("other")).sign_dsse(
            cosign_statement(d, ref),
            "eve@example.com" if what == "identity" else "ci@example.com",
            "https://issuer.example")
        await attach_bundle(registry.host, repo, d, bundle)
        with pytest.raises(SignatureRejected):
            await svc.ensure(f"{ref}:{what}", "Always")
    # A bundle for another digest, filed under this one.
    d = await push(registry.host, repo, "replayed", images.build_image(obj + b"r", labels))
    await attach_bundle(registry.host, repo, d, sigstore.sign_dsse(
        cosign_statement(digest, ref), "ci@example.com", "https://issuer.example"))
    with pytest.raises(SignatureRejected) as err:
        await svc.ensure(f"{ref}:replayed", "Always")
    assert "subject is not this image digest" in err.value.message


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
async def test_skopeo_reads_our_images(registry: LocalRegistry, obj: bytes,  # noqa: F811
                                       labels: images.Labels) -> None:
    digest = await push(registry.host, "bytecode/skopeo", "v1", images.build_image(obj, labels))
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                          f"docker://{registry.host}/bytecode/skopeo:v1"],
                         capture_output=True, text=True, check=True, timeout=60)
    info = json.loads(out.stdout)
    assert info["Digest"] == digest
    assert json.loads(info["Labels"][images.LABEL_PROGRAMS]) == labels.programs
    assert json.loads(info["Labels"][images.LABEL_MAPS]) == labels.maps
    assert (info["Os"], info["Architecture"]) == HOST_PLATFORM


async def test_remove_collects_blobs_but_keeps_objects_in_use(
        tmp_path: Path, registry: LocalRegistry, obj: bytes,  # noqa: F811
        labels: images.Labels) -> None:
    from bpfman.model.requests import ImageRefRequest

    svc = service(tmp_path, registry)
    await push(registry.host, "bytecode/rm", "a", images.build_image(obj, labels))
    await push(registry.host, "bytecode/rm", "b", images.build_image(obj + b"b", labels))
    a = await svc.ensure(f"{registry.host}/bytecode/rm:a", "IfNotPresent")
    await svc.ensure(f"{registry.host}/bytecode/rm:b", "IfNotPresent")
    in_use = svc.object_for_load(ImageSource(f"{registry.host}/bytecode/rm:a", "Never"),
                                 ["count_getpid"])
    svc.in_use = lambda: {str(in_use)}
    reply = svc.remove(None, ImageRefRequest(f"{registry.host}/bytecode/rm@{a.digest}"))
    assert reply.removed == [f"{registry.host}/bytecode/rm:a"]
    assert reply.blobs_freed == 3  # manifest, config, layer of a (b's remain)
    assert in_use.exists()
    assert [e.url for e in svc.cache.list()] == [f"{registry.host}/bytecode/rm:b"]
    with pytest.raises(ImageNotFound):
        svc.remove(None, ImageRefRequest(f"{registry.host}/bytecode/rm:a"))


async def test_cached_verdicts_need_the_same_policy(
        tmp_path: Path, registry: LocalRegistry, obj: bytes,  # noqa: F811
        labels: images.Labels, cosign_key: CosignKey) -> None:  # noqa: F811
    url = f"{registry.host}/bytecode/policy:v1"
    await push(registry.host, "bytecode/policy", "v1", images.build_image(obj + b"p", labels))
    lenient = service(tmp_path, registry, SigningConfig(allow_unsigned=True))
    assert (await lenient.ensure(url, "IfNotPresent")).verification == "unsigned_allowed"
    # Same cache, stricter policy: the cached verdict does not count.
    strict = service(tmp_path, registry,
                     SigningConfig(allow_unsigned=False, public_keys=[cosign_key[1]]))
    with pytest.raises(ImageNotFound, match="another signing policy"):
        await strict.ensure(url, "Never")
    with pytest.raises(SignatureRejected):
        await strict.ensure(url, "IfNotPresent")
    with pytest.raises(ImageNotFound):
        strict.object_for_load(ImageSource(url, "Never"), ["count_getpid"])


async def test_https_to_a_plain_http_registry_says_what_to_set(
        registry: LocalRegistry) -> None:  # noqa: F811
    """The usual first mistake with a local registry: the error names it and
    the config line that fixes it, instead of an empty reason."""
    async with oci.RegistryClient(registry.host, plain_http=False, timeout=5) as client:
        with pytest.raises(PullFailed) as err:
            await client.get_manifest("bytecode/none", "v1")
    exc = err.value
    assert exc.data()["reason"] == "unreachable"
    assert exc.message.split(": ")[-1] != ""
    assert "plain_http = true" in exc.message and registry.host in exc.data()["hint"]
