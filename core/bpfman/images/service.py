"""The `image.*` methods and the image half of `program.load`: pull (resolve,
verify the signature, fetch every blob by digest), cache, hand the verified
object to the loader."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from bpfman.images import oci, signing
from bpfman.images.cache import CacheEntry, ImageCache, cache_key, utc_now
from bpfman.images.config import ImagesConfig, RegistryConfig
from bpfman.images.oci import Credentials, ImageRef, Manifest
from bpfman.images.spec import (
    MAX_CONFIG_BYTES,
    Labels,
    check_object,
    check_programs,
    extract_object,
    parse_labels,
)
from bpfman.model.errors import (
    ImageError,
    ImageNotFound,
    InvalidArgument,
    PullFailed,
    SignatureRejected,
)
from bpfman.model.replies import ImageRemoveReply, ImageReply
from bpfman.model.requests import (
    ImageInspectRequest,
    ImagePullRequest,
    ImageRefRequest,
    ImageSource,
)

log = logging.getLogger("bpfman.images")


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
            size=len(resolved.layer), pulled_at=utc_now(), verification=resolved.verdict.status,
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
