"""A real Kubernetes control plane and simulated nodes for the k8s tests.

`Cluster` runs etcd and kube-apiserver (built by scripts/k8s-control-plane.sh) on
127.0.0.1 with TLS, static-token authentication for the admin only, RBAC, and
service-account token signing; it installs our CRDs, the agent and operator RBAC
and the admission policy from operator/ exactly as a real cluster would get them.
Agents and the operator authenticate with real TokenRequest service-account tokens
(an agent's token is bound to its Node, so its user info carries the node name).

`SimNode` is one simulated node: a Node object, its own network namespace holding
`eth0` with the Node's InternalIP (peer end in a second namespace so tests can send
traffic to it), its own pybpfman daemon, and optionally its agent process. Pods are
API objects bound to a node and marked Running; their "containers" are network
namespaces (and optionally processes) the test creates, published to the agents'
test resolver through a JSON file.

No kubelet, scheduler or controller-manager runs: no garbage collection, no
namespace finalization, no service-account controller.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import ipaddress
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from bpfman.testing import TEST_RUN_ROOT, DaemonProcess

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "operator" / "crds"
DEPLOY = REPO / "operator" / "deploy"
DEFAULT_BIN = Path("/var/cache/pybpfman/k8s/v1.36.3-etcd3.6.16/bin")
# What the test cluster installs from operator/deploy (the DaemonSet and the operator
# Deployment need a kubelet; they are checked by server-side dry run instead).
CLUSTER_MANIFESTS = ("namespace.yaml", "rbac-agent.yaml", "rbac-operator.yaml",
                     "admission-policy.yaml")
SYSTEM_NAMESPACE = "bpfman"
AGENT_SA = "bpfman-agent"
OPERATOR_SA = "bpfman-operator"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
TOKEN_SECONDS = 24 * 3600

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # Control-plane and agent processes must not outlive a killed pytest.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def bin_dir() -> Path:
    return Path(os.environ.get("BPFMAN_K8S_BIN") or DEFAULT_BIN)


def binaries_missing() -> list[str]:
    return [b for b in ("etcd", "kube-apiserver", "kubectl") if not (bin_dir() / b).is_file()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1,
               what: str = "condition") -> Any:
    """Poll `check` until it returns a truthy value (returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError, AssertionError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


class Proc:
    """A child process with its log file, stopped (and its group killed) on cleanup."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name, self.cmd, self.log = name, cmd, log
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True, preexec_fn=_die_with_parent)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Send `sig` (SIGKILL to simulate a crash), wait, escalate to SIGKILL."""
        if self.popen is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        code = self.popen.returncode
        self.popen = None
        return code

    def log_text(self, tail: int = 200) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-tail:])


def _tls_material(d: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a serving certificate for 127.0.0.1 (so clients verify TLS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pybpfman-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = d / "ca.crt", d / "apiserver.crt", d / "apiserver.key"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


def _sa_signing_key(d: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = d / "sa.key", d / "sa.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    priv.chmod(0o600)
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def load_manifests(*paths: Path) -> list[dict[str, Any]]:
    """Every document of the given YAML files (or directories of them), in order."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for f in files:
            if f.name == "kustomization.yaml":
                continue
            docs.extend(d for d in yaml.safe_load_all(f.read_text()) if d)
    return docs


class Cluster:
    """etcd + kube-apiserver on 127.0.0.1 random ports, with our CRDs and RBAC installed."""

    def __init__(self, root: Path, tag: str) -> None:
        self.root, self.tag = root, tag
        self.bin = bin_dir()
        self.etcd: Proc | None = None
        self.apiserver: Proc | None = None
        self.operator: Proc | None = None
        self.port = 0
        self.admin_token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        self._kubeconfigs: dict[str, Path] = {}
        self._http: dict[str, httpx.Client] = {}
        self.pods_file = root / "test-pods.json"
        self.pods_file.write_text("{}")
        self._namespaces: set[str] = set()
        self.nodes: dict[str, SimNode] = {}
        self.pods: dict[str, dict[str, Any]] = {}

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        pki = self.root / "pki"
        pki.mkdir()
        self.ca, self.tls_cert, self.tls_key = _tls_material(pki)
        self.sa_key, self.sa_pub = _sa_signing_key(pki)
        (pki / "tokens.csv").write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        self._start_etcd()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._start_apiserver()
        self._install()

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.etcd = Proc("etcd", [
            str(self.bin / "etcd"), "--name", self.tag, "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"{self.tag}=http://127.0.0.1:{peer}",
            # Test data: durability is not worth an fsync per write on a shared disk.
            "--unsafe-no-fsync", "--log-level", "warn",
        ], self.root / "etcd.log").start()
        wait_until(lambda: httpx.get(f"{self.etcd_url}/health", timeout=2).status_code == 200,
                   timeout=30, what="etcd health")

    def _apiserver_cmd(self) -> list[str]:
        pki = self.root / "pki"
        return [
            str(self.bin / "kube-apiserver"),
            "--etcd-servers", self.etcd_url, "--etcd-prefix", f"/{self.tag}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port),
            "--tls-cert-file", str(self.tls_cert), "--tls-private-key-file", str(self.tls_key),
            "--cert-dir", str(pki),
            "--token-auth-file", str(pki / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", self.url,
            "--service-account-key-file", str(self.sa_pub),
            "--service-account-signing-key-file", str(self.sa_key),
            "--service-cluster-ip-range", "10.0.0.0/24",
            # No service-account controller runs: pods would otherwise need a token volume.
            "--disable-admission-plugins", "ServiceAccount",
            "--endpoint-reconciler-type", "none",
            "--allow-privileged=true",
            "--profiling=false",
            "-v=1",
        ]

    def _start_apiserver(self, timeout: float = 120.0) -> None:
        self.apiserver = Proc("kube-apiserver", self._apiserver_cmd(),
                              self.root / "kube-apiserver.log").start()

        def ready() -> bool:
            if not self.apiserver or not self.apiserver.running():
                raise RuntimeError("kube-apiserver exited:\n"
                                   + (self.apiserver.log_text(60) if self.apiserver else ""))
            return self.request("GET", "/readyz").status_code == 200

        wait_until(ready, timeout=timeout, interval=0.2, what="kube-apiserver /readyz")

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver (SIGTERM), optionally stay down, start it again, wait ready."""
        assert self.apiserver is not None
        self.apiserver.stop()
        for client in self._http.values():
            client.close()
        self._http.clear()
        if down_seconds:
            time.sleep(down_seconds)
        self._start_apiserver()

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        for node in list(self.nodes.values()):
            with contextlib.suppress(Exception):
                node.cleanup()
        for client in self._http.values():
            client.close()
        self._http.clear()
        for proc in (self.apiserver, self.etcd):
            if proc is not None:
                proc.stop()

    def _install(self) -> None:
        crds = load_manifests(CRDS)
        self.apply(crds)
        for crd in crds:
            name = crd["metadata"]["name"]
            wait_until(lambda n=name: self._crd_established(n), timeout=60,
                       what=f"CRD {name} established")
        self.apply(load_manifests(*(DEPLOY / f for f in CLUSTER_MANIFESTS)))
        self._wait_policy_active()

    def _crd_established(self, name: str) -> bool:
        r = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        # Right after creation the server may answer "conditions": null.
        conds = (r.json().get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    def _wait_policy_active(self) -> None:
        """The admission policy reaches the apiserver's informer asynchronously: probe it
        with a dry-run write as an agent of another node until it is refused."""
        body = {"apiVersion": "bpfman.io/v1alpha1", "kind": "ClusterBpfApplicationState",
                "metadata": {"name": f"policy-probe-{self.tag}",
                             "labels": {"kubernetes.io/hostname": "some-other-node"}}}
        headers = {"Impersonate-User": f"system:serviceaccount:{SYSTEM_NAMESPACE}:{AGENT_SA}",
                   "Impersonate-Group": "system:serviceaccounts",
                   "Impersonate-Extra-" + NODE_NAME_EXTRA.replace("/", "%2F"): "policy-probe"}

        def refused() -> bool:
            r = self.request("POST", "/apis/bpfman.io/v1alpha1/clusterbpfapplicationstates"
                             "?dryRun=All", json=body, headers=headers)
            return r.status_code in (400, 403, 422) and "ValidatingAdmissionPolicy" in r.text

        wait_until(refused, timeout=60, interval=0.3, what="the admission policy to be active")

    # -- access --------------------------------------------------------------------------
    def token_for(self, user: str) -> str:
        """'admin', 'operator', or a node name (its agent's Node-bound token)."""
        if user == "admin":
            return self.admin_token
        if user == "operator":
            return self.request_token(OPERATOR_SA)
        node = self.get(f"/api/v1/nodes/{user}")
        return self.request_token(AGENT_SA, bound_node=node)

    def request_token(self, sa: str, bound_node: dict[str, Any] | None = None,
                      seconds: int = TOKEN_SECONDS) -> str:
        spec: dict[str, Any] = {"audiences": [self.url], "expirationSeconds": seconds}
        if bound_node is not None:
            # A Node-bound token: the apiserver adds the node name to the user's extra
            # info, which the admission policy compares with the State being written.
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Node",
                                      "name": bound_node["metadata"]["name"],
                                      "uid": bound_node["metadata"]["uid"]}
        r = self.request("POST", f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/serviceaccounts/{sa}"
                         "/token", json={"apiVersion": "authentication.k8s.io/v1",
                                         "kind": "TokenRequest", "spec": spec})
        r.raise_for_status()
        return str(r.json()["status"]["token"])

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig file (CA-verified TLS, bearer token) for 'admin', 'operator' or a node."""
        if user in self._kubeconfigs:
            return self._kubeconfigs[user]
        token = self.token_for(user)
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.ca.read_bytes()).decode()}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        }
        path = self.root / f"kubeconfig-{user}"
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        self._kubeconfigs[user] = path
        return path

    def _client(self, user: str) -> httpx.Client:
        if user not in self._http:
            token = self.admin_token if user == "admin" else self.token_for(user)
            tls = ssl.create_default_context(cafile=str(self.ca))
            self._http[user] = httpx.Client(base_url=self.url, verify=tls, timeout=30,
                                            headers={"Authorization": f"Bearer {token}"})
        return self._http[user]

    def request(self, method: str, path: str, *, user: str = "admin", json: Any = None,
                content_type: str | None = None, **kw: Any) -> httpx.Response:
        """One raw API request (no status check). `content_type` for patches, e.g.
        'application/merge-patch+json'."""
        headers = dict(kw.pop("headers", {}) or {})
        if content_type:
            headers["Content-Type"] = content_type
        return self._client(user).request(method, path, json=json, headers=headers, **kw)

    def get(self, path: str, user: str = "admin") -> dict[str, Any]:
        r = self.request("GET", path, user=user)
        r.raise_for_status()
        return dict(r.json())

    def kubectl(self, *args: str, user: str = "admin", input: str | None = None,
                check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl as `user`."""
        proc = subprocess.run([str(self.bin / "kubectl"), "--kubeconfig",
                               str(self.kubeconfig_for(user)), *args],
                              input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def apply(self, manifests: str | Path | dict[str, Any] | Iterable[dict[str, Any]], *,
              user: str = "admin", check: bool = True,
              extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` of YAML text, a file, one object or a list of objects."""
        if isinstance(manifests, Path):
            text = manifests.read_text()
        elif isinstance(manifests, str):
            text = manifests
        elif isinstance(manifests, dict):
            text = yaml.safe_dump(manifests)
        else:
            text = yaml.safe_dump_all(list(manifests))
        return self.kubectl("apply", "-f", "-", *extra, user=user, input=text, check=check)

    def start_operator(self, extra_env: dict[str, str] | None = None,
                       args: tuple[str, ...] = ()) -> Proc:
        """Run `bpfman-operator` with the operator's service-account kubeconfig."""
        if self.operator is not None and self.operator.running():
            raise RuntimeError("the operator is already running")
        cmd = [str(Path(sys.executable).with_name("bpfman-operator")), *args]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig_for("operator")),
               "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.operator = Proc("operator", cmd, self.root / "operator.log", env=env).start()
        return self.operator

    def ensure_namespace(self, name: str) -> None:
        if name in self._namespaces:
            return
        r = self.request("POST", "/api/v1/namespaces",
                         json={"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": name}})
        if r.status_code not in (201, 409):
            r.raise_for_status()
        self._namespaces.add(name)

    # -- pods for the agents' test resolver ----------------------------------------------
    def _write_pods(self) -> None:
        tmp = self.pods_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.pods, indent=1, sort_keys=True))
        tmp.rename(self.pods_file)


_COUNTER = itertools.count(1)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


class SimNode:
    """One simulated node: Node object, netns with eth0 = InternalIP, daemon, agent."""

    def __init__(self, cluster: Cluster, name: str, labels: dict[str, str] | None = None,
                 *, start_daemon: bool = True) -> None:
        self.cluster, self.name = cluster, name
        n = next(_COUNTER)
        self.index = n
        short = f"{os.getpid() % 100000}-{n}"
        # Node netns (where eth0 lives) and an "outside" netns at the other end of the wire.
        self.netns = f"k8si-{short}-node"
        self.ext_netns = f"k8si-{short}-ext"
        self.iface = "eth0"
        self.ip, self.peer_ip = f"10.240.{n % 250}.2", f"10.240.{n % 250}.1"
        self.labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       **(labels or {})}
        # Dot-free path: libbpf rewrites '.' in pin paths under the bpffs.
        self.root = Path(tempfile.mkdtemp(prefix=f"k8si{n}-", dir=TEST_RUN_ROOT))
        (self.root / "daemon").mkdir()
        self.daemon = DaemonProcess(self.root / "daemon")
        self.agent: Proc | None = None
        self._pods: list[str] = []
        self._pod_netns: list[str] = []
        self._pod_procs: list[subprocess.Popen[bytes]] = []
        self._daemon_wanted = start_daemon

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def setup(self) -> SimNode:
        self.cluster.nodes[self.name] = self
        _ip("netns", "add", self.netns)
        _ip("netns", "add", self.ext_netns)
        # Both ends are called eth0, each in its own namespace, like a node's uplink.
        _ip("link", "add", "eth0", "netns", self.netns, "type", "veth",
            "peer", "name", "eth0", "netns", self.ext_netns)
        for ns, addr in ((self.netns, self.ip), (self.ext_netns, self.peer_ip)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        r = self.cluster.request("POST", "/api/v1/nodes", json={
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels}})
        r.raise_for_status()
        r = self.cluster.request(
            "PATCH", f"/api/v1/nodes/{self.name}/status",
            content_type="application/merge-patch+json",
            json={"status": {"addresses": [{"type": "InternalIP", "address": self.ip},
                                           {"type": "Hostname", "address": self.name}]}})
        r.raise_for_status()
        if self._daemon_wanted:
            self.daemon.start()
        return self

    # -- Node labels ---------------------------------------------------------------------
    def set_labels(self, labels: dict[str, str | None]) -> None:
        """Add/change labels (value None removes one) on the Node object."""
        r = self.cluster.request("PATCH", f"/api/v1/nodes/{self.name}",
                                 content_type="application/merge-patch+json",
                                 json={"metadata": {"labels": labels}})
        r.raise_for_status()
        for k, v in labels.items():
            if v is None:
                self.labels.pop(k, None)
            else:
                self.labels[k] = v

    # -- agent ---------------------------------------------------------------------------
    def agent_env(self) -> dict[str, str]:
        return {
            "KUBE_NODE_NAME": self.name,
            "KUBECONFIG": str(self.cluster.kubeconfig_for(self.name)),
            "BPFMAN_SOCKET": str(self.daemon.socket),
            "BPFMAN_AGENT_RESOLVER": "test",
            "BPFMAN_AGENT_TEST_PODS": str(self.cluster.pods_file),
            "BPFMAN_AGENT_NODE_NETNS": self.netns_path,
        }

    def start_agent(self, extra_env: dict[str, str] | None = None,
                    args: tuple[str, ...] = ()) -> Proc:
        """Run `bpfman-agent` for this node (stopped at cleanup)."""
        if self.agent is not None and self.agent.running():
            raise RuntimeError(f"agent of {self.name} already running")
        cmd = [str(Path(sys.executable).with_name("bpfman-agent")), *args]
        env = {**os.environ, **self.agent_env(), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.agent = Proc(f"agent-{self.name}", cmd, self.root / "agent.log", env=env).start()
        return self.agent

    def stop_agent(self, sig: int = signal.SIGTERM) -> int | None:
        return self.agent.stop(sig) if self.agent is not None else None

    # -- pods ----------------------------------------------------------------------------
    def make_pod(self, name: str, namespace: str = "default", labels: dict[str, str] | None = None,
                 *, containers: Iterable[str] = ("app",),
                 commands: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """A Running Pod on this node with its own network namespace.

        The pod's netns holds `eth0` (a /30 point-to-point link to the node netns, the
        node end named `vp<n>`); `commands` maps container names to commands started
        inside that netns, whose pids the test resolver reports for the container.
        Returns the Pod's record: {"node", "netns", "pids", "containers", "ip"}.
        """
        self.cluster.ensure_namespace(namespace)
        n = next(_COUNTER)
        ns = f"k8si-{os.getpid() % 100000}-{n}-pod"
        node_if = f"vp{os.getpid() % 100000}x{n}"[:15]
        base = int(ipaddress.ip_address("10.250.0.0")) + 4 * n
        node_ip, pod_ip = str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))
        _ip("netns", "add", ns)
        self._pod_netns.append(ns)
        _ip("link", "add", node_if, "netns", self.netns, "type", "veth",
            "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.netns, "addr", "add", f"{node_ip}/30", "dev", node_if)
        _ip("-n", self.netns, "link", "set", node_if, "up")
        _ip("-n", ns, "addr", "add", f"{pod_ip}/30", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        names = list(containers)
        container_pids: dict[str, list[int]] = {c: [] for c in names}
        for cname, cmd in (commands or {}).items():
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent)
            self._pod_procs.append(proc)
            container_pids.setdefault(cname, []).append(proc.pid)
        c = self.cluster
        r = c.request("POST", f"/api/v1/namespaces/{namespace}/pods", json={
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"nodeName": self.name,
                     "containers": [{"name": cn, "image": "example.invalid/none:0"}
                                    for cn in container_pids]}})
        r.raise_for_status()
        r = c.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                      content_type="application/merge-patch+json",
                      json={"status": {"phase": "Running", "podIP": pod_ip,
                                       "conditions": [{"type": "Ready", "status": "True"}]}})
        r.raise_for_status()
        record = {"node": self.name, "netns": f"/run/netns/{ns}",
                  "pids": [p for ps in container_pids.values() for p in ps],
                  "containers": container_pids, "ip": pod_ip, "node_ip": node_ip}
        key = f"{namespace}/{name}"
        c.pods[key] = record
        c._write_pods()
        self._pods.append(key)
        return record

    def delete_pod(self, name: str, namespace: str = "default") -> None:
        """Delete the Pod object (grace 0) and forget it in the resolver file."""
        self.cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}"
                             "?gracePeriodSeconds=0")
        self.cluster.pods.pop(f"{namespace}/{name}", None)
        self.cluster._write_pods()

    # -- teardown ------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Agent, daemon (unmounting its bpffs drops every pin), pods, netns, Node object."""
        c = self.cluster
        if self.agent is not None:
            self.agent.stop()
        for proc in self._pod_procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._pod_procs.clear()
        self.daemon.cleanup()
        for key in self._pods:
            ns, pod = key.split("/", 1)
            with contextlib.suppress(Exception):
                c.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{pod}?gracePeriodSeconds=0")
            c.pods.pop(key, None)
        self._pods.clear()
        with contextlib.suppress(Exception):
            c._write_pods()
        for ns in [*self._pod_netns, self.netns, self.ext_netns]:
            _ip("netns", "del", ns, check=False)
        self._pod_netns.clear()
        with contextlib.suppress(Exception):
            c.request("DELETE", f"/api/v1/nodes/{self.name}")
        c.nodes.pop(self.name, None)
        shutil.rmtree(self.root, ignore_errors=True)

    def dump_logs(self) -> str:
        parts = [f"--- daemon log of {self.name} ---\n{self.daemon.log_text()[-8000:]}"]
        if self.agent is not None:
            parts.append(f"--- agent log of {self.name} ---\n{self.agent.log_text()}")
        return "\n".join(parts)


@contextlib.contextmanager
def running_cluster(tag: str | None = None) -> Iterator[Cluster]:
    """A started `Cluster`, stopped with everything it made, whatever happened."""
    TEST_RUN_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    tag = tag or f"k8si{os.getpid()}"
    root = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=TEST_RUN_ROOT))
    cluster = Cluster(root, tag)
    try:
        cluster.start()
        yield cluster
    except BaseException:
        for proc in (cluster.apiserver, cluster.etcd):
            if proc is not None:
                sys.stderr.write(f"--- {proc.name} log ---\n{proc.log_text(80)}\n")
        raise
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
