"""A small OCI distribution client: httpx under trio, every byte digest-checked.

Why not oras-py: it hides the raw manifest bytes (we need their digest to
verify signatures), does not check blob digests, retries for minutes and has
no timeouts (reference/oci-images-and-signing.md §2.1). This client returns
raw bytes with the digest *we* computed, cross-checks `Docker-Content-Digest`,
caps every read, and maps every failure to `PullFailed` with the URL.

Auth: anonymous, HTTP Basic, and the registry token flow (a `Bearer`
challenge answered with a token fetched from its realm, with the same basic
credentials if any). Plain http only when the caller says so for that
registry.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx

from bpfman.model.errors import InvalidArgument, PullFailed

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_TYPES = (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))

MAX_MANIFEST_BYTES = 4 << 20
DEFAULT_REGISTRY = "docker.io"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str, field: str = "digest") -> str:
    if not _DIGEST.match(digest):
        raise InvalidArgument(f"unsupported digest {digest!r} (sha256:<64 hex> only)", field=field)
    return digest


@attrs.frozen
class ImageRef:
    """``registry/repository[:tag][@sha256:...]``, parsed as docker does."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, field: str = "image") -> ImageRef:
        rest, _, digest = text.partition("@")
        if digest:
            check_digest(digest, field)
        first, slash, path = rest.partition("/")
        # The first component is a registry host when it looks like one.
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, name = first, path
        else:
            registry, name = DEFAULT_REGISTRY, rest
            if "/" not in name:
                name = "library/" + name
        tag = None
        head, colon, maybe_tag = name.rpartition(":")
        if colon and "/" not in maybe_tag:
            name, tag = head, maybe_tag
        if (not _HOST.match(registry) or not _REPO.match(name)
                or (tag is not None and not _TAG.match(tag))):
            raise InvalidArgument(f"not an image reference: {text!r}", field=field)
        if tag is None and not digest:
            tag = "latest"
        return cls(registry, name, tag, digest or None)

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def pinned(self, digest: str) -> ImageRef:
        return attrs.evolve(self, digest=digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@attrs.frozen
class Manifest:
    raw: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.raw)


@attrs.frozen(repr=False)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never in logs or tracebacks
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI/GOARCH names."""
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}.get(machine, machine)
    return "linux", arch


def pick_platform(index: dict[str, Any], want: tuple[str, str] | None = None) -> dict[str, Any]:
    """The index entry for the host platform (or `want`)."""
    os_name, arch = want or host_platform()
    entries = index.get("manifests") or []
    for entry in entries:
        plat = entry.get("platform") or {}
        if plat.get("os") == os_name and plat.get("architecture") == arch:
            return entry
    available = sorted(
        f"{(e.get('platform') or {}).get('os')}/{(e.get('platform') or {}).get('architecture')}"
        for e in entries
    )
    raise PullFailed(f"the image index has no manifest for {os_name}/{arch}",
                     reason="no_matching_platform", platform=f"{os_name}/{arch}",
                     available=available)


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryClient:
    """One registry, one httpx client; use as ``async with RegistryClient(...)``."""

    def __init__(
        self,
        registry: str,
        *,
        plain_http: bool = False,
        credentials: Credentials | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.registry = registry
        self.base = f"{'http' if plain_http else 'https'}://{registry}"
        self.credentials = credentials
        self.timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._token: str | None = None

    async def __aenter__(self) -> RegistryClient:
        self._client = httpx.AsyncClient(
            base_url=self.base, timeout=httpx.Timeout(self.timeout),
            follow_redirects=True,  # blob GETs may redirect to object storage
            transport=self._transport,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- transport ----------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        if self._token:
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def _basic(self) -> httpx.BasicAuth | None:
        c = self.credentials
        return httpx.BasicAuth(c.username, c.password) if c else None

    def _unreachable(self, url: str, exc: BaseException) -> PullFailed:
        """A transport failure, said plainly: some carry no message at all, and
        an https request to a plain-http registry fails in TLS."""
        why = str(exc) or type(exc).__name__
        hint = None
        if self.base.startswith("https://") and (
                not str(exc) or "SSL" in why or "TLS" in why or "handshake" in why.lower()
                or isinstance(exc, httpx.RemoteProtocolError)):
            hint = (f"if {self.registry} serves plain HTTP, say so in bpfman.toml:"
                    f' [[images.registries]] host = "{self.registry}", plain_http = true')
        return PullFailed(f"registry unreachable: {url}: {why}" + (f" ({hint})" if hint else ""),
                          url=url, reason="unreachable", **({"hint": hint} if hint else {}))

    async def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        assert self._client is not None, "use `async with RegistryClient(...)`"
        full = url if url.startswith("http") else self.base + url
        try:
            headers = {**kw.pop("headers", {}), **self._auth_headers()}
            auth = None if self._token else self._basic()
            resp = await self._client.request(method, full, headers=headers, auth=auth, **kw)
            if resp.status_code == 401 and await self._answer_challenge(resp):
                headers.update(self._auth_headers())
                resp = await self._client.request(method, full, headers=headers, **kw)
        except httpx.TimeoutException:
            raise PullFailed(f"registry timed out after {self.timeout:g}s: {method} {full}",
                             url=full, reason="timeout") from None
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(full, exc) from None
        if resp.status_code in (401, 403):
            raise PullFailed(
                f"registry refused {method} {full}: HTTP {resp.status_code}"
                + ("" if self.credentials else " (no credentials given)"),
                url=full, reason="unauthorized", status=resp.status_code)
        return resp

    async def _answer_challenge(self, resp: httpx.Response) -> bool:
        """Fetch a bearer token when the registry asks for one."""
        challenge = resp.headers.get("www-authenticate", "")
        if not challenge.lower().startswith("bearer ") or self._token:
            return False
        fields = dict(_CHALLENGE.findall(challenge))
        realm = fields.pop("realm", "")
        if not realm:
            return False
        assert self._client is not None
        got = await self._client.get(realm, params=fields, auth=self._basic())
        if got.status_code != 200:
            return False
        try:
            body = got.json()
            self._token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            return False
        return bool(self._token)

    @staticmethod
    def _fail(resp: httpx.Response, what: str, **data: Any) -> PullFailed:
        return PullFailed(f"{what}: HTTP {resp.status_code} from {resp.request.url}",
                          url=str(resp.request.url), status=resp.status_code,
                          reason="not_found" if resp.status_code == 404 else "http_error",
                          **data)

    async def _read_capped(self, resp: httpx.Response, limit: int) -> bytes:
        declared = int(resp.headers.get("content-length") or 0)
        if declared > limit:
            raise PullFailed(f"{resp.request.url} is {declared} bytes, more than {limit}",
                             url=str(resp.request.url), reason="too_large")
        data = bytearray()
        async for chunk in resp.aiter_bytes():
            data += chunk
            if len(data) > limit:
                raise PullFailed(f"{resp.request.url} exceeds {limit} bytes",
                                 url=str(resp.request.url), reason="too_large")
        return bytes(data)

    # -- reads --------------------------------------------------------------

    async def ping(self) -> None:
        resp = await self._send("GET", "/v2/")
        if resp.status_code != 200:
            raise self._fail(resp, "not an OCI registry")

    async def get_manifest(self, repo: str, reference: str, *,
                           missing_ok: bool = False) -> Manifest | None:
        """The manifest or index at a tag or digest, with its digest checked.

        With `missing_ok`, a 404 returns None (a signature tag that does not
        exist means "unsigned", not an error).
        """
        url = f"/v2/{repo}/manifests/{reference}"
        resp = await self._send("GET", url, headers={"Accept": ACCEPT})
        if resp.status_code == 404 and missing_ok:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"cannot get manifest {repo}:{reference}")
        raw = resp.content
        if len(raw) > MAX_MANIFEST_BYTES:
            raise PullFailed("manifest too large", url=str(resp.url), reason="too_large")
        digest = sha256_digest(raw)
        expected = reference if reference.startswith("sha256:") else None
        header = resp.headers.get("docker-content-digest")
        for claimed in (expected, header):
            if claimed and claimed != digest:
                raise PullFailed(
                    f"manifest digest mismatch for {repo}:{reference}: got {digest},"
                    f" expected {claimed}", url=str(resp.url), reason="digest_mismatch",
                    expected=claimed, actual=digest)
        try:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise ValueError("not an object")
            media_type = document.get("mediaType") or ""
        except ValueError:
            raise PullFailed("manifest is not JSON", url=str(resp.url),
                             reason="bad_manifest") from None
        media_type = media_type or resp.headers.get("content-type", "").split(";")[0]
        return Manifest(raw, media_type, digest)

    async def get_blob(self, repo: str, digest: str, *, limit: int,
                       progress: Callable[[int], None] | None = None) -> bytes:
        """A blob, refused unless its sha256 is `digest`."""
        check_digest(digest)
        url = f"/v2/{repo}/blobs/{digest}"
        assert self._client is not None
        try:
            async with self._client.stream(
                "GET", self.base + url, headers=self._auth_headers(),
                auth=None if self._token else self._basic(),
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise self._fail(resp, f"cannot get blob {digest}")
                data = await self._read_capped(resp, limit)
        except httpx.TimeoutException:
            raise PullFailed(f"registry timed out after {self.timeout:g}s: GET {self.base + url}",
                             url=self.base + url, reason="timeout") from None
        except httpx.TransportError as exc:
            raise self._unreachable(self.base + url, exc) from None
        if progress is not None:
            progress(len(data))
        actual = sha256_digest(data)
        if actual != digest:
            raise PullFailed(f"blob digest mismatch: got {actual}, expected {digest}",
                             url=self.base + url, reason="digest_mismatch",
                             expected=digest, actual=actual)
        return data

    async def get_referrers(self, repo: str, digest: str) -> dict[str, Any] | None:
        """The OCI 1.1 referrers index, or None when the API is missing
        (distribution 2.8 answers 404; callers fall back to the tag schema)."""
        resp = await self._send("GET", f"/v2/{repo}/referrers/{digest}",
                                headers={"Accept": OCI_INDEX})
        if resp.status_code != 200:
            return None
        try:
            return resp.json()
        except ValueError:
            return None

    # -- writes (image build --push, tests) -----------------------------------

    async def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        head = await self._send("HEAD", f"/v2/{repo}/blobs/{digest}")
        if head.status_code == 200:
            return digest
        start = await self._send("POST", f"/v2/{repo}/blobs/uploads/")
        if start.status_code not in (201, 202):
            raise self._fail(start, "cannot start blob upload")
        location = start.headers["location"]
        # httpx's params= would replace the query (dropping _state): append.
        location += ("&" if "?" in location else "?") + f"digest={digest}"
        put = await self._send("PUT", location, content=data,
                               headers={"Content-Type": "application/octet-stream"})
        if put.status_code != 201:
            raise self._fail(put, f"cannot upload blob {digest}")
        return digest

    async def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        resp = await self._send("PUT", f"/v2/{repo}/manifests/{reference}", content=raw,
                                headers={"Content-Type": media_type})
        if resp.status_code != 201:
            raise self._fail(resp, f"cannot push manifest {repo}:{reference}",
                             body=resp.text[:500])
        return sha256_digest(raw)


@asynccontextmanager
async def open_registry(ref: ImageRef, *, plain_http: bool, credentials: Credentials | None,
                        timeout: float) -> AsyncIterator[RegistryClient]:
    host = "registry-1.docker.io" if ref.registry == DEFAULT_REGISTRY else ref.registry
    async with RegistryClient(host, plain_http=plain_http, credentials=credentials,
                              timeout=timeout) as client:
        yield client
