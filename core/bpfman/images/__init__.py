"""Bytecode images: the bpfman image spec, pulls, a verified cache, builds.

The spec (upstream bpfman, reference/upstream-bpfman.md §4): an OCI or
Docker v2 image (or a multi-arch index of them) whose first layer is a
tar+gzip holding the ELF object as its first regular file, and whose config
labels describe it: ``io.ebpf.programs`` (JSON: function name -> program
type) and ``io.ebpf.maps`` (JSON: map name -> map type). Images made for
bpfman 0.3 carry single-program labels (``io.ebpf.bpf_function_name``,
``io.ebpf.program_type``...) instead; they are read as a one-program image.

Pull: resolve the reference to a digest by hashing the manifest ourselves,
pick the host's platform from an index, verify the signature of that digest
(`bpfman.images.signing`) *before* reading the config or layer, then fetch every
blob by digest and check it. Nothing reaches the cache until everything
checked out, so a failed pull leaves no entry behind.

Cache (under ``<state_dir>/images``): ``blobs/sha256/<hex>`` hold manifests,
configs and layers by digest; ``entries/<key>.json`` maps a reference to the
digests it resolved to, the labels and the verification verdict. Every read
recomputes the digest of every blob it uses; a mismatch removes the entry and
fails (`ImageError`, reason ``cache_corrupted``). The object handed to libbpf
is re-extracted from the verified layer on every load, so what was verified
is what is loaded.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from bpfman.images import oci, signing
from bpfman.images.oci import Credentials, ImageRef, Manifest
from bpfman.model.errors import (
    ImageError,
    ImageNotFound,
    InvalidArgument,
    PullFailed,
    SignatureRejected,
)
from bpfman.model.requests import ImageSource, doc, pull_policy_validator

log = logging.getLogger("bpfman.images")

LABEL_PROGRAMS = "io.ebpf.programs"
LABEL_MAPS = "io.ebpf.maps"
LEGACY_FUNCTION = "io.ebpf.bpf_function_name"
LEGACY_NAME = "io.ebpf.program_name"
LEGACY_TYPE = "io.ebpf.program_type"
LEGACY_FILENAME = "io.ebpf.filename"
MAX_CONFIG_BYTES = 1 << 20
ELF_MAGIC = b"\x7fELF"
EM_BPF = 247

# libbpf program type names -> the type strings bpfman writes into labels.
LABEL_TYPES = {"sched_cls": "tc", "kprobe": "probe", "socket_filter": "socket_filter"}


# -- configuration ---------------------------------------------------------------


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


# -- wire types ------------------------------------------------------------------


@attrs.frozen
class ImagePullRequest:
    url: str = doc("image reference")
    pull_policy: str = doc("Always, IfNotPresent (default) or Never",
                           default="IfNotPresent", validator=pull_policy_validator)
    username: str | None = doc("registry user (never stored)", default=None)
    password: str | None = doc("registry password (never stored)", default=None, repr=False)


@attrs.frozen
class ImageRefRequest:
    url: str = doc("image reference as pulled, or REGISTRY/REPO@sha256:DIGEST")


@attrs.frozen
class ImageInspectRequest:
    url: str = doc("image reference")
    username: str | None = doc("registry user (never stored)", default=None)
    password: str | None = doc("registry password (never stored)", default=None, repr=False)


@attrs.frozen
class ImageReply:
    url: str = doc("the reference as given")
    digest: str = doc("digest the reference resolved to (the index for multi-arch images)")
    manifest_digest: str = doc("digest of the manifest for this host's platform")
    programs: dict[str, str] = doc("program function name -> type, from the labels")
    maps: dict[str, str] = doc("map name -> type, from the labels")
    size: int = doc("bytes of the compressed layer")
    verification: str = doc("verified, unsigned_allowed, disabled (or, from image.inspect"
                            " only, rejected)")
    signer: str | None = doc("who signed it, when verified", default=None)
    rejection: str | None = doc("image.inspect: why verification rejects it", default=None)
    pulled_at: str | None = doc("when it entered the cache (null: not cached)", default=None)
    cached: bool = doc("whether the cache holds it", default=False)


@attrs.frozen
class ImageRemoveReply:
    removed: list[str] = doc("references removed from the cache")
    blobs_freed: int = doc("blobs deleted because nothing refers to them any more")


# -- the spec --------------------------------------------------------------------


@attrs.frozen
class Labels:
    programs: dict[str, str]
    maps: dict[str, str]


def parse_labels(config_json: bytes) -> Labels:
    """The bpfman labels of an image config (current or legacy form)."""
    try:
        config = json.loads(config_json)
        labels = (config.get("config") or {}).get("Labels") or {}
    except (ValueError, AttributeError):
        raise ImageError("image config is not a JSON object", reason="bad_config") from None
    if LABEL_PROGRAMS in labels and LABEL_MAPS in labels:
        programs = _json_label(labels, LABEL_PROGRAMS)
        maps = _json_label(labels, LABEL_MAPS)
        return Labels(programs, maps)
    function = labels.get(LEGACY_FUNCTION) or labels.get(LEGACY_NAME)
    if function and labels.get(LEGACY_TYPE):
        return Labels({function: labels[LEGACY_TYPE]}, {})
    raise ImageError(
        f"not a bpfman bytecode image: config has no {LABEL_PROGRAMS}/{LABEL_MAPS} labels"
        f" (nor the legacy {LEGACY_FUNCTION}/{LEGACY_TYPE})",
        reason="missing_labels", labels=sorted(labels))


def _json_label(labels: dict[str, str], name: str) -> dict[str, str]:
    try:
        value = json.loads(labels[name])
    except ValueError:
        raise ImageError(f"label {name} is not JSON", reason="bad_label", label=name) from None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ImageError(f"label {name} must map names to type strings",
                         reason="bad_label", label=name)
    return value


def extract_object(layer: bytes, max_bytes: int) -> bytes:
    """The first regular file of a gzipped tar, in memory (no extraction to
    disk, no path handling: a root daemon must not trust member names)."""
    try:
        raw = gzip.GzipFile(fileobj=io.BytesIO(layer)).read(max_bytes + 1)
    except (OSError, EOFError) as exc:
        raise ImageError(f"layer is not gzip: {exc}", reason="bad_layer") from None
    if len(raw) > max_bytes:
        raise ImageError(f"layer unpacks to more than {max_bytes} bytes", reason="too_large")
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.isreg():
                    f = tar.extractfile(member)
                    assert f is not None
                    return f.read()
    except tarfile.TarError as exc:
        raise ImageError(f"layer is not a tar archive: {exc}", reason="bad_layer") from None
    raise ImageError("layer holds no file", reason="bad_layer")


def check_object(data: bytes) -> None:
    """An ELF object in the host's byte order (upstream checks the same)."""
    if data[:4] != ELF_MAGIC or len(data) < 20:
        raise ImageError("the image's file is not an ELF object", reason="not_elf")
    ei_data = data[5]
    order = {1: "little", 2: "big"}.get(ei_data)
    if order != sys.byteorder:
        raise ImageError(f"the image's object is {order}-endian; this host is"
                         f" {sys.byteorder}-endian", reason="endianness",
                         object_endianness=order, host_endianness=sys.byteorder)


def check_programs(labels: Labels, names: list[str], url: str) -> None:
    """Every requested program must be declared by the image's labels."""
    for i, name in enumerate(names):
        if name not in labels.programs:
            raise InvalidArgument(
                f"program {name!r} is not in image {url}"
                f" (labels list: {', '.join(sorted(labels.programs)) or 'none'})",
                field=f"programs[{i}].name", reason="program_not_in_image",
                available=sorted(labels.programs))


def labels_for_object(path: Path) -> Labels:
    """Labels derived from an object's sections and maps, as upstream's
    `image build` does (libbpf's view; internal .rodata/.data/.bss excluded)."""
    from bpfman import kernel

    spec = kernel.inspect_object(path)
    programs = {p.name: LABEL_TYPES.get(p.kernel_type, p.kernel_type) for p in spec.programs}
    maps = {m.name: m.type for m in spec.maps if not m.internal}
    return Labels(programs, maps)


@attrs.frozen
class BuiltImage:
    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return oci.sha256_digest(self.manifest)


def build_image(obj: bytes, labels: Labels, *, filename: str = "bytecode.o",
                platform: tuple[str, str] | None = None) -> BuiltImage:
    """A reproducible single-layer OCI image (fixed mtimes, sorted JSON)."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(filename)
        info.size, info.mode, info.mtime = len(obj), 0o644, 0
        tar.addfile(info, io.BytesIO(obj))
    tar_bytes = tar_buf.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    os_name, arch = platform or oci.host_platform()
    config = _canonical({
        "architecture": arch, "os": os_name,
        "config": {"Labels": {LABEL_PROGRAMS: json.dumps(labels.programs, sort_keys=True),
                              LABEL_MAPS: json.dumps(labels.maps, sort_keys=True)}},
        "rootfs": {"type": "layers", "diff_ids": [oci.sha256_digest(tar_bytes)]},
    })
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": _descriptor(oci.OCI_CONFIG, config),
        "layers": [_descriptor(oci.OCI_LAYER_GZIP, layer)],
    })
    return BuiltImage(config, layer, manifest)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": oci.sha256_digest(data), "size": len(data),
            **extra}


async def push_image(client: oci.RegistryClient, repo: str, tag: str,
                     image: BuiltImage) -> str:
    await client.push_blob(repo, image.config)
    await client.push_blob(repo, image.layer)
    return await client.put_manifest(repo, tag, image.manifest, oci.OCI_MANIFEST)


# -- the cache -------------------------------------------------------------------


@attrs.frozen
class CacheEntry:
    url: str
    key: str
    registry: str
    repository: str
    digest: str
    manifest_digest: str
    config_digest: str
    layer_digest: str
    programs: dict[str, str]
    maps: dict[str, str]
    size: int
    pulled_at: str
    verification: str
    signer: str | None
    policy: str  # the signing policy fingerprint it was verified under

    def reply(self) -> ImageReply:
        return ImageReply(url=self.url, digest=self.digest, manifest_digest=self.manifest_digest,
                          programs=self.programs, maps=self.maps, size=self.size,
                          verification=self.verification, signer=self.signer,
                          pulled_at=self.pulled_at, cached=True)


def cache_key(ref: ImageRef) -> str:
    """Tags are cached by tag (IfNotPresent does not notice a moved tag, as
    upstream), digest references by digest."""
    base = f"{ref.registry}/{ref.repository}"
    return f"{base}@{ref.digest}" if ref.digest else f"{base}:{ref.tag}"


class ImageCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.entries = root / "entries"
        self.objects = root / "objects"

    def ensure_dirs(self) -> None:
        for d in (self.blobs, self.entries, self.objects):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _entry_path(self, key: str) -> Path:
        return self.entries / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def lookup(self, ref: ImageRef) -> CacheEntry | None:
        entry = self._read_entry(self._entry_path(cache_key(ref)))
        if entry is None and ref.digest:
            # A digest reference is satisfied by any entry of that digest.
            for candidate in self.list():
                if (candidate.registry, candidate.repository, candidate.digest) == (
                        ref.registry, ref.repository, ref.digest):
                    return candidate
        return entry

    def _read_entry(self, path: Path) -> CacheEntry | None:
        try:
            return CacheEntry(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            log.warning("unreadable image cache entry %s removed", path)
            path.unlink(missing_ok=True)
            return None

    def list(self) -> list[CacheEntry]:
        if not self.entries.is_dir():
            return []
        found = [self._read_entry(p) for p in sorted(self.entries.glob("*.json"))]
        return sorted((e for e in found if e is not None), key=lambda e: e.key)

    def read_blob(self, digest: str, entry: CacheEntry | None = None) -> bytes:
        """A blob, its digest recomputed; a mismatch drops the entry."""
        path = self.blobs / oci.check_digest(digest).partition(":")[2]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        if data is None or oci.sha256_digest(data) != digest:
            if entry is not None:
                self.remove_entry(entry)
            what = "missing" if data is None else "corrupted"
            raise ImageError(
                f"image cache {what}: blob {digest}"
                + (f" of {entry.url} (entry removed; pull again)" if entry else ""),
                reason="cache_corrupted", digest=digest)
        return data

    def commit(self, entry: CacheEntry, blobs: list[bytes]) -> None:
        """Blobs first, the entry last and atomically: a crash in between
        leaves unreferenced blobs (collected by `gc`), never a broken entry."""
        self.ensure_dirs()
        for data in blobs:
            hexdigest = hashlib.sha256(data).hexdigest()
            path = self.blobs / hexdigest
            # An existing blob is kept only if intact (a re-pull repairs corruption).
            if not (path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == hexdigest):
                _atomic_write(path, data)
        _atomic_write(self._entry_path(entry.key),
                      json.dumps(attrs.asdict(entry), indent=1).encode())

    def remove_entry(self, entry: CacheEntry) -> None:
        self._entry_path(entry.key).unlink(missing_ok=True)

    def gc(self, keep: frozenset[str] | set[str] = frozenset()) -> int:
        """Delete blobs no entry refers to, and extracted objects not in `keep`
        (paths of loaded programs: `lost_programs = "restore"` reloads them)."""
        live: set[str] = set()
        for e in self.list():
            live.update(d.partition(":")[2] for d in
                        (e.digest, e.manifest_digest, e.config_digest, e.layer_digest))
        freed = 0
        if self.blobs.is_dir():
            for path in self.blobs.iterdir():
                if path.name not in live:
                    path.unlink(missing_ok=True)
                    freed += 1
        if self.objects.is_dir():
            for path in self.objects.iterdir():
                if str(path) not in keep:
                    path.unlink(missing_ok=True)  # re-extracted on the next load
        return freed

    def object_path(self, entry: CacheEntry, max_bytes: int) -> tuple[Path, Labels]:
        """The object of a cached image as a file for libbpf, from verified blobs."""
        manifest = json.loads(self.read_blob(entry.manifest_digest, entry))
        if (manifest.get("config") or {}).get("digest") != entry.config_digest or (
                (manifest.get("layers") or [{}])[0].get("digest") != entry.layer_digest):
            self.remove_entry(entry)
            raise ImageError(f"image cache entry of {entry.url} disagrees with its manifest",
                             reason="cache_corrupted")
        labels = parse_labels(self.read_blob(entry.config_digest, entry))
        obj = extract_object(self.read_blob(entry.layer_digest, entry), max_bytes)
        check_object(obj)
        self.objects.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.objects / (hashlib.sha256(obj).hexdigest() + ".bpf.o")
        # Always rewrite: the bytes libbpf opens are the ones just verified.
        _atomic_write(path, obj)
        return path, labels


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -- the service (what the API methods call) -----------------------------------------


@attrs.frozen
class Resolved:
    """A pulled (not yet cached) image: every blob verified."""

    ref: ImageRef
    top: Manifest
    manifest: Manifest
    config: bytes
    layer: bytes
    labels: Labels
    verdict: signing.Verdict


class ImageService:
    """`image.*` methods and the image half of `program.load`.

    Network work runs on the trio loop (async methods, never in the kernel
    lane); the cache is local files whose every read is verified.
    """

    def __init__(self, config: ImagesConfig, signing_config: signing.SigningConfig,
                 state_dir: Path, in_use: Callable[[], set[str]] = set) -> None:
        self.config = config
        self.verifier = signing.Verifier(signing_config)
        self.cache = ImageCache(state_dir / "images")
        self.verifier.check_trust_root()  # a bad trust root fails at startup, offline
        #: paths of the objects loaded programs use: gc keeps them
        self.in_use = in_use

    # -- pulling --------------------------------------------------------------

    def _credentials(self, ref: ImageRef, username: str | None,
                     password: str | None) -> Credentials | None:
        if username is not None:
            return Credentials(username, password or "")
        return self.config.registry(ref.registry).credentials()

    def _usable(self, entry: CacheEntry | None) -> bool:
        """A cached verdict counts only under the signing policy that made it."""
        return entry is not None and (not self.verifier.config.verify_enabled
                                      or entry.policy == self.verifier.fingerprint())

    async def ensure(self, url: str, policy: str, username: str | None = None,
                     password: str | None = None,
                     progress: Callable[[int], None] | None = None) -> CacheEntry:
        """The cache entry for `url` under a pull policy (pulling if needed)."""
        ref = ImageRef.parse(url, field="url")
        if policy != "Always":
            entry = self.cache.lookup(ref)
            if self._usable(entry):
                assert entry is not None
                return entry
            if policy == "Never":
                why = ("cached under another signing policy" if entry is not None
                       else "not in the image cache")
                raise ImageNotFound(f"image {url} is {why} and pull_policy is Never",
                                    url=url, reason="not_cached")
        resolved = await self.fetch(ref, self._credentials(ref, username, password), progress)
        entry = CacheEntry(
            url=url, key=cache_key(ref), registry=ref.registry, repository=ref.repository,
            digest=resolved.top.digest, manifest_digest=resolved.manifest.digest,
            config_digest=oci.sha256_digest(resolved.config),
            layer_digest=oci.sha256_digest(resolved.layer),
            programs=resolved.labels.programs, maps=resolved.labels.maps,
            size=len(resolved.layer), pulled_at=_now(), verification=resolved.verdict.status,
            signer=resolved.verdict.signer, policy=self.verifier.fingerprint(),
        )
        blobs = [resolved.top.raw, resolved.manifest.raw, resolved.config, resolved.layer]
        await trio.to_thread.run_sync(self.cache.commit, entry, blobs)
        log.info("pulled %s as %s (%s)", url, entry.digest, entry.verification)
        return entry

    async def fetch(self, ref: ImageRef, credentials: Credentials | None,
                    progress: Callable[[int], None] | None = None,
                    *, verify: bool = True) -> Resolved:
        """Resolve, verify and download an image; raises before anything
        unverified is parsed beyond its manifest."""
        reg = self.config.registry(ref.registry)
        try:
            return await self._fetch(ref, reg, credentials, progress, verify)
        except trio.TooSlowError:
            raise PullFailed(f"pulling {ref} took more than {self.config.timeout_seconds * 4:g}s",
                             url=str(ref), reason="timeout") from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            # A registry document without the fields the spec requires.
            raise PullFailed(f"malformed registry document for {ref}: {type(exc).__name__}:"
                             f" {exc}", url=str(ref), reason="bad_manifest") from None

    async def _fetch(self, ref: ImageRef, reg: RegistryConfig, credentials: Credentials | None,
                     progress: Callable[[int], None] | None, verify: bool) -> Resolved:
        with trio.fail_after(self.config.timeout_seconds * 4):  # the whole pull
            async with oci.open_registry(ref, plain_http=reg.plain_http,
                                         credentials=credentials,
                                         timeout=self.config.timeout_seconds) as client:
                top = await client.get_manifest(ref.repository, ref.reference)
                assert top is not None
                manifest = top
                if top.media_type in oci.INDEX_TYPES:
                    chosen = oci.pick_platform(top.json())
                    got = await client.get_manifest(ref.repository, chosen["digest"])
                    assert got is not None
                    manifest = got
                if manifest.media_type not in oci.MANIFEST_TYPES:
                    raise PullFailed(f"{ref} is a {manifest.media_type or 'unknown'} document,"
                                     " not an image manifest", url=str(ref),
                                     reason="bad_manifest", media_type=manifest.media_type)
                verdict = signing.Verdict("unchecked")
                if verify:
                    verdict = await self._verify(client, ref, top, manifest)
                body = manifest.json()
                layers = body.get("layers") or []
                if not layers or layers[0].get("mediaType") not in oci.LAYER_TYPES:
                    raise ImageError(
                        f"{ref}: the first layer must be tar+gzip"
                        f" ({' or '.join(oci.LAYER_TYPES)})", reason="bad_layer")
                config = await client.get_blob(ref.repository, body["config"]["digest"],
                                               limit=MAX_CONFIG_BYTES)
                labels = parse_labels(config)
                layer = await client.get_blob(ref.repository, layers[0]["digest"],
                                              limit=self.config.max_layer_bytes,
                                              progress=progress)
        check_object(extract_object(layer, self.config.max_layer_bytes * 8))
        return Resolved(ref, top, manifest, config, layer, labels, verdict)

    async def _verify(self, client: oci.RegistryClient, ref: ImageRef, top: Manifest,
                      manifest: Manifest) -> signing.Verdict:
        if not self.verifier.config.verify_enabled:
            return signing.Verdict("disabled")
        evidence = await signing.collect(client, ref.repository, top.digest)
        if evidence.unsigned and manifest.digest != top.digest:
            # cosign signs what the tag resolves to (the index), or with
            # --recursive each platform manifest: accept either.
            evidence = await signing.collect(client, ref.repository, manifest.digest)
        return await trio.to_thread.run_sync(self.verifier.verify, evidence)

    # -- API methods ------------------------------------------------------------

    async def pull(self, caller: Any, req: ImagePullRequest) -> ImageReply:
        entry = await self.ensure(req.url, req.pull_policy, req.username, req.password)
        return entry.reply()

    async def inspect(self, caller: Any, req: ImageInspectRequest) -> ImageReply:
        """The image as the registry has it now (verified, not cached), or
        the cache entry when the registry cannot be reached."""
        ref = ImageRef.parse(req.url, field="url")
        cached = self.cache.lookup(ref)
        credentials = self._credentials(ref, req.username, req.password)
        rejection = None
        try:
            try:
                r = await self.fetch(ref, credentials)
            except SignatureRejected as exc:
                # Inspecting is how one finds out why: report it, do not fail.
                rejection = exc.message
                r = await self.fetch(ref, credentials, verify=False)
        except PullFailed:
            if cached is None:
                raise
            return cached.reply()
        return ImageReply(url=req.url, digest=r.top.digest, manifest_digest=r.manifest.digest,
                          programs=r.labels.programs, maps=r.labels.maps, size=len(r.layer),
                          verification="rejected" if rejection else r.verdict.status,
                          signer=r.verdict.signer, rejection=rejection,
                          pulled_at=cached.pulled_at if cached else None,
                          cached=cached is not None and cached.digest == r.top.digest)

    def list(self, caller: Any, req: Any) -> list[ImageReply]:
        return [e.reply() for e in self.cache.list()]

    def remove(self, caller: Any, req: ImageRefRequest) -> ImageRemoveReply:
        ref = ImageRef.parse(req.url, field="url")
        key = cache_key(ref)
        victims = [e for e in self.cache.list()
                   if e.key == key or (ref.digest is not None and e.digest == ref.digest
                                       and e.repository == ref.repository)]
        if not victims:
            raise ImageNotFound(f"image {req.url} is not in the cache", url=req.url)
        for e in victims:
            self.cache.remove_entry(e)
        return ImageRemoveReply([e.url for e in victims], self.cache.gc(self.in_use()))

    # -- program.load ------------------------------------------------------------

    async def prepare_load(self, caller: Any, req: Any) -> Any:
        """Before `program.load` enters the kernel lane: pull (per policy),
        then pin the request to the verified digest so the lane loads exactly
        what was verified and never waits on the network."""
        src: ImageSource | None = getattr(req, "image", None)
        if src is None:
            return req
        if getattr(req, "path", None) is not None:  # before any network traffic
            raise InvalidArgument("give exactly one of path and image", field="path")
        entry = await self.ensure(src.url, src.pull_policy, src.username, src.password)
        pinned = str(ImageRef.parse(src.url, field="image.url").pinned(entry.digest))
        return attrs.evolve(req, image=ImageSource(pinned, "Never"))

    def object_for_load(self, src: ImageSource, names: list[str]) -> Path:
        """In the kernel lane: the cached object's path, every blob verified
        and every requested program present in the labels."""
        ref = ImageRef.parse(src.url, field="image.url")
        entry = self.cache.lookup(ref)
        if not self._usable(entry):
            if src.pull_policy == "Never":
                raise ImageNotFound(f"image {src.url} is not in the image cache and"
                                    " pull_policy is Never", url=src.url, reason="not_cached")
            # Called outside the RPC path: pull from this worker thread.
            try:
                entry = trio.from_thread.run(self.ensure, src.url, src.pull_policy,
                                             src.username, src.password)
            except RuntimeError:  # not a trio worker thread: no loop to pull with
                raise ImageNotFound(f"image {src.url} is not in the image cache",
                                    url=src.url, reason="not_cached") from None
        assert entry is not None
        path, labels = self.cache.object_path(entry, self.config.max_layer_bytes * 8)
        check_programs(labels, names, src.url)
        return path
