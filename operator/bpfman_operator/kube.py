"""A small, blocking Kubernetes API client and a list+watch cache.

Why not kopf: the agent must never write the application objects that every
node's agent and the operator share (kopf keeps its finalizer, progress and
diff-base on the handled object), its pass is level-triggered over all
applications rather than per object, and equal-priority kopf peers freeze
each other. The operator and agent need eight REST verbs; httpx is already a
pinned dependency of the core, so this module is all there is.

Authentication: a kubeconfig (``KUBECONFIG``: bearer token or token file,
client certificate, CA or insecure-skip-tls-verify) or, in a pod, the
service account token (re-read on every request: bound tokens rotate).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import yaml

from bpfman_operator.api import Kind

log = logging.getLogger("bpfman_operator.kube")

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class ApiError(Exception):
    """The API server refused a request (a Status object)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


@attrs.define
class Config:
    server: str
    token: str | None = None
    token_file: str | None = None
    verify: ssl.SSLContext | bool = True
    cert: tuple[str, str] | None = None

    def bearer(self) -> str | None:
        if self.token_file:
            with open(self.token_file) as f:
                return f.read().strip()
        return self.token


def _data_file(data: str, suffix: str) -> str:
    # httpx/ssl want files for client certificates: keep them for the process' life.
    with tempfile.NamedTemporaryFile("wb", suffix=suffix, delete=False) as f:
        f.write(base64.b64decode(data))
    return f.name


def load_config(path: str | None = None) -> Config:
    """From `path`, else ``KUBECONFIG``, else the pod's service account."""
    path = path or os.environ.get("KUBECONFIG")
    if not path:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get(
            "KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise RuntimeError("no KUBECONFIG and not in a pod (KUBERNETES_SERVICE_HOST unset)")
        ctx = ssl.create_default_context(cafile=f"{SA_DIR}/ca.crt")
        return Config(server=f"https://{host}:{port}", token_file=f"{SA_DIR}/token", verify=ctx)
    with open(path) as f:
        doc = yaml.safe_load(f)
    base = os.path.dirname(os.path.abspath(path))
    current = doc.get("current-context")
    context = next(c["context"] for c in doc["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
    user = next((u["user"] for u in doc.get("users") or [] if u["name"] == context.get("user")),
                {})

    def rel(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(base, p)

    verify: ssl.SSLContext | bool = True
    if cluster.get("insecure-skip-tls-verify"):
        verify = False
    elif cluster.get("certificate-authority-data"):
        verify = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        verify = ssl.create_default_context(cafile=rel(cluster["certificate-authority"]))
    cert = None
    if user.get("client-certificate-data"):
        cert = (_data_file(user["client-certificate-data"], ".crt"),
                _data_file(user["client-key-data"], ".key"))
    elif user.get("client-certificate"):
        cert = (rel(user["client-certificate"]), rel(user["client-key"]))
    return Config(server=cluster["server"].rstrip("/"), token=user.get("token"),
                  token_file=rel(user["tokenFile"]) if user.get("tokenFile") else None,
                  verify=verify, cert=cert)


def path_of(kind: Kind, namespace: str | None = None, name: str | None = None,
            sub: str | None = None) -> str:
    root = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    if kind.namespaced and namespace:
        root += f"/namespaces/{quote(namespace)}"
    root += f"/{kind.plural}"
    if name:
        root += f"/{quote(name)}"
    if sub:
        root += f"/{sub}"
    return root


class Client:
    """Blocking calls; safe to share between threads (one httpx pool)."""

    def __init__(self, config: Config | None = None, *, timeout: float = 30.0) -> None:
        self.config = config or load_config()
        self._http = httpx.Client(base_url=self.config.server, verify=self.config.verify,
                                  cert=self.config.cert, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.config.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str = "application/json") -> Any:
        content = None if body is None else json.dumps(body).encode()
        resp = self._http.request(method, path, params=params, content=content,
                                  headers=self._headers(content_type if content else None))
        if resp.status_code >= 400:
            raise _error(resp.status_code, resp.content)
        return resp.json() if resp.content else None

    # -- verbs ---------------------------------------------------------------
    def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.request("GET", path_of(kind, namespace, name))

    def get_or_none(self, kind: Kind, name: str,
                    namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.get(kind, name, namespace)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def list(self, kind: Kind, namespace: str | None = None, *, label_selector: str = "",
             field_selector: str = "") -> dict[str, Any]:
        params = {k: v for k, v in (("labelSelector", label_selector),
                                    ("fieldSelector", field_selector)) if v}
        return self.request("GET", path_of(kind, namespace), params=params)

    def create(self, kind: Kind, body: Mapping[str, Any],
               namespace: str | None = None) -> dict[str, Any]:
        return self.request("POST", path_of(kind, namespace), body=body)

    def patch(self, kind: Kind, name: str, patch: Any, namespace: str | None = None, *,
              status: bool = False, json_patch: bool = False) -> dict[str, Any]:
        """A merge patch (or a JSON patch: a list of operations), of the
        object or of its ``/status`` subresource."""
        return self.request(
            "PATCH", path_of(kind, namespace, name, "status" if status else None), body=patch,
            content_type="application/json-patch+json" if json_patch
            else "application/merge-patch+json")

    def replace(self, kind: Kind, body: Mapping[str, Any], *,
                status: bool = False) -> dict[str, Any]:
        """PUT: fails with 409 when ``metadata.resourceVersion`` is stale."""
        meta = body["metadata"]
        return self.request("PUT", path_of(kind, meta.get("namespace"), meta["name"],
                                           "status" if status else None), body=body)

    def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        try:
            self.request("DELETE", path_of(kind, namespace, name))
        except ApiError as exc:
            if exc.code != 404:
                raise

    def watch(self, kind: Kind, resource_version: str, *, label_selector: str = "",
              field_selector: str = "", timeout: int = 300) -> Iterator[dict[str, Any]]:
        """Watch events from `resource_version` until the server ends the
        stream (after about `timeout` s). Raises `ApiError` 410 when it is too old."""
        params = {"watch": "1", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        with self._http.stream("GET", path_of(kind), params=params, headers=self._headers(),
                               timeout=httpx.Timeout(30.0, read=timeout + 30)) as resp:
            if resp.status_code >= 400:
                raise _error(resp.status_code, resp.read())
            for line in resp.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    obj = event.get("object") or {}
                    raise ApiError(obj.get("code", 500), obj.get("reason", ""),
                                   obj.get("message", ""))
                yield event


def _error(code: int, content: bytes) -> ApiError:
    try:
        status = json.loads(content)
        return ApiError(code, status.get("reason", ""), status.get("message", ""))
    except ValueError:
        return ApiError(code, "", content[:200].decode(errors="replace"))


def key_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


class Informer:
    """A cache of one kind (optionally filtered by selectors) kept by list +
    watch in a thread; `on_change` is called after each change (and after
    each relist). Reconnects with backoff when the server goes away."""

    def __init__(self, client: Client, kind: Kind, on_change: Callable[[], None], *,
                 label_selector: str = "", field_selector: str = "") -> None:
        self.client, self.kind, self.on_change = client, kind, on_change
        self.label_selector, self.field_selector = label_selector, field_selector
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind.plural}",
                                        daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items.values())

    def get(self, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self._lock:
            return self._items.get((namespace, name))

    def store(self, obj: Mapping[str, Any]) -> None:
        """Record our own write now, so that the next pass sees it even
        before the watch delivers it (never older than what is cached)."""
        with self._lock:
            key = key_of(obj)
            old = self._items.get(key)
            if old is None or _rv(obj) >= _rv(old):
                self._items[key] = dict(obj)

    def forget(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            self._items.pop(key_of(obj), None)

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                listing = self.client.list(self.kind, label_selector=self.label_selector,
                                           field_selector=self.field_selector)
                with self._lock:
                    self._items = {key_of(o): o for o in listing.get("items") or []}
                rv = listing["metadata"]["resourceVersion"]
                self.synced.set()
                self.on_change()
                backoff = 0.2
                while not self._stop.is_set():
                    for event in self.client.watch(self.kind, rv,
                                                   label_selector=self.label_selector,
                                                   field_selector=self.field_selector):
                        obj = event["object"]
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if event["type"] == "BOOKMARK":
                            continue
                        with self._lock:
                            if event["type"] == "DELETED":
                                self._items.pop(key_of(obj), None)
                            else:
                                self._items[key_of(obj)] = obj
                        self.on_change()
            except ApiError as exc:
                if exc.code != 410:  # 410: our version is too old: just relist
                    log.warning("watch %s: %s", self.kind.plural, exc)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
            except (httpx.HTTPError, OSError, ValueError) as exc:
                log.info("watch %s interrupted (%s); relisting", self.kind.plural, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


def _rv(obj: Mapping[str, Any]) -> int:
    # Resource versions are opaque, but etcd's are integers; comparing them
    # only guards the cache against a stale overwrite.
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class LevelTriggered:
    """The loop the agent and the operator share: start the informers, and
    after any change (or every `resync` seconds) make one `reconcile_all`
    pass over everything, once every cache has synced. `reconcile_all`
    returns how soon the next pass is due, or None for the resync."""

    informers: list[Informer]
    log = log  # subclasses log as themselves
    retry_after_failure = 2.0  # seconds, after a pass that raised

    def __init__(self, resync: float) -> None:
        self.resync = resync
        self.trigger = threading.Event()
        self.stopping = threading.Event()

    def reconcile_all(self) -> float | None:
        raise NotImplementedError

    def run(self) -> None:
        for inf in self.informers:
            inf.start()
        while not self.stopping.is_set():
            if not all(inf.synced.is_set() for inf in self.informers):
                self.trigger.wait(0.5)
                self.trigger.clear()
                continue
            self.trigger.clear()
            try:
                retry = self.reconcile_all()
            except Exception:
                self.log.exception("reconcile pass failed")
                retry = self.retry_after_failure
            self.trigger.wait(self.resync if retry is None else min(retry, self.resync))
            time.sleep(0.02)  # let a burst of watch events land in one pass

    def stop(self) -> None:
        self.stopping.set()
        self.trigger.set()
        for inf in self.informers:
            inf.stop()

