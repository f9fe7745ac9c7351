"""Bytecode images end to end: a real registry on 127.0.0.1, images built and
pushed by `bpfman image build`, signed by the test (cosign key and keyless
bundles from a Sigstore of its own), loaded and attached by a real daemon,
counted by real syscalls and real packets."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec
from images.fixtures import (  # noqa: F401
    CosignKey,
    cosign_key,
    registry,
    sigstore,
    trusted_root,
)
from images.publish import attach_bundle, attach_key_signature
from images.registry import LocalRegistry
from images.sigstore_local import LocalSigstore, cosign_statement

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, VethPair, running_daemon

IDENTITY, ISSUER = "ci@example.com", "https://issuer.example"
N_CALLS = 50


def u32(value: int) -> str:
    return struct.pack("<I", value).hex()


def counter(map_dir: str) -> int:
    raw = kernel.map_lookup(Path(map_dir) / "counts", struct.pack("<I", 0))
    assert raw is not None
    return struct.unpack("<Q", raw[:8])[0]


def config(reg: LocalRegistry, pem: Path, root: Path, *, allow_unsigned: bool = False) -> str:
    return f"""
[images]
timeout_seconds = 10
[[images.registries]]
host = "{reg.host}"
plain_http = true

[signing]
verify_enabled = true
allow_unsigned = {str(allow_unsigned).lower()}
public_keys = ["{pem}"]
trusted_root = "{root}"
[[signing.trusted_identities]]
certificate_identity = "{IDENTITY}"
certificate_oidc_issuer = "{ISSUER}"
"""


@pytest.fixture
def d(registry: LocalRegistry, cosign_key: CosignKey,  # noqa: F811
      trusted_root: Path) -> Iterator[DaemonProcess]:  # noqa: F811
    with running_daemon(config(registry, cosign_key[1], trusted_root)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def tp_object(bpf_program: Callable[..., Path]) -> Path:
    return bpf_program("tp_counter")


def build_push(d: DaemonProcess, obj: Path, url: str) -> str:
    out = d.cli("-o", "json", "image", "build", "--path", str(obj), "--tag", url, "--push",
                "--plain-http")
    result = json.loads(out.stdout)
    assert result["pushed"] and result["programs"]
    return result["digest"]


def test_build_sign_pull_load_attach(d: DaemonProcess, registry: LocalRegistry,  # noqa: F811
                                     tp_object: Path,
                                     cosign_key: CosignKey) -> None:  # noqa: F811
    url = f"{registry.host}/bytecode/tp-counter:v1"
    digest = build_push(d, tp_object, url)
    trio.run(attach_key_signature, registry.host, "bytecode/tp-counter", digest, cosign_key[0])

    pulled = json.loads(d.cli("-o", "json", "image", "pull", url).stdout)
    assert pulled["digest"] == digest and pulled["verification"] == "verified"
    assert pulled["programs"] == {"count_getpid": "tracepoint", "count_getppid": "tracepoint"}
    listed = d.client().call("image.list")
    assert [(i["url"], i["digest"]) for i in listed] == [(url, digest)]
    assert "count_getpid" in d.cli("image", "list").stdout

    out = d.cli("-o", "json", "load", "image", "--image-url", url, "--programs",
                "tracepoint:count_getpid", "-g", f"target_pid={u32(os.getpid())}",
                "--pull-policy", "Never")
    [prog] = json.loads(out.stdout)["programs"]
    # The record points at the object extracted from the verified cache.
    assert prog["path"].startswith(str(d.state_dir / "images" / "objects"))
    assert prog["image"] == f"{url}@{digest}"  # pinned to what was verified
    d.cli("attach", str(prog["program_id"]), "tracepoint", "--tracepoint",
          "syscalls/sys_enter_getpid")
    before = counter(prog["map_pin_dir"])
    for _ in range(N_CALLS):
        os.getpid()
    assert counter(prog["map_pin_dir"]) - before == N_CALLS

    # A program name the labels do not list: precise error, nothing loaded.
    with pytest.raises(RpcError) as err:
        d.client().call("program.load", {"image": {"url": url},
                                         "programs": [{"name": "nope", "type": "tracepoint"}]})
    assert err.value.code == 1000 and err.value.data["field"] == "programs[0].name"
    with pytest.raises(RpcError) as err:  # neither path nor image
        d.client().call("program.load", {"programs": [{"name": "x", "type": "tracepoint"}]})
    assert err.value.code == 1000

    inspected = json.loads(d.cli("-o", "json", "image", "inspect", url).stdout)
    assert inspected["digest"] == digest and inspected["cached"]
    assert "removed" in d.cli("image", "remove", url).stdout
    # The object of a loaded program stays (a restore after reboot reloads it).
    assert Path(prog["path"]).exists()
    d.cli("unload", str(prog["program_id"]))
    assert d.client().call("image.list") == []
    with pytest.raises(RpcError) as err:  # Never, with the cache now empty
        d.client().call("image.pull", {"url": url, "pull_policy": "Never"})
    assert err.value.code == 1100 and err.value.data["reason"] == "not_cached"


def test_load_from_image_keyless(d: DaemonProcess, registry: LocalRegistry,  # noqa: F811
                                 tp_object: Path, sigstore: LocalSigstore) -> None:  # noqa: F811
    url = f"{registry.host}/bytecode/tp-keyless:v1"
    digest = build_push(d, tp_object, url)
    trio.run(attach_bundle, registry.host, "bytecode/tp-keyless", digest, sigstore.sign_dsse(
        cosign_statement(digest, url), IDENTITY, ISSUER))
    # An attach that fails unloads what the one-shot form loaded.
    failed = d.cli("load-from-image", "-i", url, "-n", "count_getpid", "tracepoint",
                   "--tracepoint", "nosuch/tracepoint", check=False)
    assert failed.returncode == 1 and "error:" in failed.stderr
    assert d.client().call("program.list") == []
    # Two tracepoint programs in the image: the one-shot form needs -n.
    ambiguous = d.cli("load-from-image", "-i", url, "tracepoint", "--tracepoint",
                      "syscalls/sys_enter_getpid", check=False)
    assert ambiguous.returncode == 2 and "count_getpid (tracepoint)" in ambiguous.stderr
    out = d.cli("-o", "json", "load-from-image", "-g", f"target_pid={u32(os.getpid())}",
                "-i", url, "-n", "count_getpid", "tracepoint", "--tracepoint",
                "syscalls/sys_enter_getpid")
    result = json.loads(out.stdout)
    prog, link = result["program"], result["link"]
    assert link["summary"] == "tracepoint syscalls/sys_enter_getpid"
    before = counter(prog["map_pin_dir"])
    for _ in range(N_CALLS):
        os.getpid()
    assert counter(prog["map_pin_dir"]) - before == N_CALLS
    [cached] = d.client().call("image.list")
    assert cached["signer"] == f"keyless {IDENTITY}"


def test_rejected_images_load_nothing(d: DaemonProcess, registry: LocalRegistry,  # noqa: F811
                                      bpf_program: Callable[..., Path],
                                      sigstore: LocalSigstore) -> None:  # noqa: F811
    repo = "bytecode/rejected"
    host = registry.host
    # Distinct objects (the file name is in the layer): one digest per case.
    build_push(d, bpf_program("tp_counter", REJECT="0"), f"{host}/{repo}:unsigned")
    wrong_key = build_push(d, bpf_program("tp_counter", REJECT="1"), f"{host}/{repo}:wrong-key")
    trio.run(attach_key_signature, host, repo, wrong_key, ec.generate_private_key(ec.SECP256R1()))
    wrong_id = build_push(d, bpf_program("tp_counter", REJECT="2"), f"{host}/{repo}:wrong-id")
    trio.run(attach_bundle, host, repo, wrong_id, sigstore.sign_dsse(
        cosign_statement(wrong_id, repo), "mallory@example.com", ISSUER))
    for tag, reason in (("unsigned", "unsigned"), ("wrong-key", "invalid_signature"),
                        ("wrong-id", "invalid_signature")):
        url = f"{host}/{repo}:{tag}"
        with pytest.raises(RpcError) as err:
            d.client().call("program.load", {
                "image": {"url": url},
                "programs": [{"name": "count_getpid", "type": "tracepoint"}]})
        assert err.value.code == 3002, err.value
        assert err.value.data["reason"] == reason
        cli = d.cli("load", "image", "--image-url", url, "--programs", "tracepoint:count_getpid",
                    check=False)
        assert cli.returncode == 1 and "error:" in cli.stderr
    inspected = d.client().call("image.inspect", {"url": f"{host}/{repo}:wrong-id"})
    assert inspected["verification"] == "rejected"
    assert "mallory@example.com" in inspected["rejection"]
    # Nothing reached the kernel or the cache.
    assert d.client().call("program.list") == []
    assert list(d.bpffs.glob("prog_*")) == []
    assert d.client().call("image.list") == []
    assert not list((d.state_dir / "images" / "objects").glob("*"))


def test_unreachable_registry_names_the_url(d: DaemonProcess) -> None:
    with pytest.raises(RpcError) as err:
        d.client().call("image.pull", {"url": "127.0.0.1:1/nothing/here:v1"})
    assert err.value.code == 3001 and err.value.data["reason"] == "unreachable"
    assert "127.0.0.1:1" in err.value.data["url"]


def test_load_from_image_xdp_drops_traffic(registry: LocalRegistry,  # noqa: F811
                                           bpf_program: Callable[..., Path], veth: VethPair,
                                           tmp_path: Path) -> None:
    """The announcement's form: `load-from-image -g GLOBAL=.. -i IMAGE xdp -i IFACE -p N`."""
    with running_daemon(f'[[images.registries]]\nhost = "{registry.host}"\nplain_http = true\n'
                        "[signing]\nverify_enabled = false\n") as d:
        assert "xdp" in d.client().call("daemon.info")["types"]  # a built-in plugin
        url = f"{registry.host}/bytecode/xdp-counter:v1"
        build_push(d, bpf_program("xdp_counter"), url)
        assert veth.ping(3) == 3
        out = d.cli("-o", "json", "load-from-image", "-g", "verdict=01000000", "-i", url,
                    "xdp", "-i", veth.if_b, "-p", "100", "--netns", veth.netns_b)
        prog = json.loads(out.stdout)["program"]
        assert veth.ping(3) == 0  # XDP_DROP on the receiving end
        raw = kernel.map_lookup(Path(prog["map_pin_dir"]) / "xdp_counts", struct.pack("<I", 0))
        assert raw is not None and struct.unpack("<Q", raw[:8])[0] >= 3
