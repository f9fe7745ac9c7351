"""The content-addressed image cache under ``<state_dir>/images``: every read
recomputes the digest of every blob it uses."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import attrs

from bpfman.images import oci
from bpfman.images.oci import ImageRef
from bpfman.images.spec import Labels, check_object, extract_object, parse_labels
from bpfman.model.errors import (
    ImageError,
)
from bpfman.model.replies import ImageReply

log = logging.getLogger("bpfman.images")


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


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
