"""The bytecode image format: references, labels, layers, builds. No network."""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bpfman.images import oci
from bpfman.images import spec as images
from bpfman.images.config import RegistryConfig
from bpfman.images.oci import ImageRef
from bpfman.model.errors import ImageError, InvalidArgument, PullFailed


@pytest.mark.parametrize("text, expected", [
    ("quay.io/bpfman-bytecode/xdp_pass:latest",
     ("quay.io", "bpfman-bytecode/xdp_pass", "latest", None)),
    ("127.0.0.1:5000/a/b", ("127.0.0.1:5000", "a/b", "latest", None)),
    ("localhost/x:v1", ("localhost", "x", "v1", None)),
    ("busybox", ("docker.io", "library/busybox", "latest", None)),
    ("reg.io/r@sha256:" + "a" * 64, ("reg.io", "r", None, "sha256:" + "a" * 64)),
    ("reg.io/r:t@sha256:" + "b" * 64, ("reg.io", "r", "t", "sha256:" + "b" * 64)),
])
def test_reference_parsing(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert ImageRef.parse(str(ref)) == ref


@pytest.mark.parametrize("bad", ["reg.io/UPPER:x", "reg.io/r@sha256:short", "reg.io/r:bad tag", ""])
def test_bad_references_are_invalid_arguments(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        ImageRef.parse(bad, field="url")
    assert err.value.details["field"] == "url"


def _config(labels: dict[str, str]) -> bytes:
    return json.dumps({"config": {"Labels": labels}}).encode()


def test_labels_current_legacy_and_missing() -> None:
    got = images.parse_labels(_config({images.LABEL_PROGRAMS: '{"pass": "xdp"}',
                                       images.LABEL_MAPS: '{"stats": "array"}'}))
    assert got == images.Labels({"pass": "xdp"}, {"stats": "array"})
    legacy = images.parse_labels(_config({images.LEGACY_FUNCTION: "pass",
                                          images.LEGACY_TYPE: "xdp",
                                          images.LEGACY_NAME: "xdp_pass"}))
    assert legacy.programs == {"pass": "xdp"}
    with pytest.raises(ImageError) as err:
        images.parse_labels(_config({"org.opencontainers.image.title": "x"}))
    assert err.value.details["reason"] == "missing_labels"
    with pytest.raises(ImageError) as err:
        images.parse_labels(_config({images.LABEL_PROGRAMS: "[1]", images.LABEL_MAPS: "{}"}))
    assert err.value.details["reason"] == "bad_label"


def test_every_requested_program_must_be_labelled() -> None:
    labels = images.Labels({"a": "tracepoint"}, {})
    images.check_programs(labels, ["a"], "u")
    with pytest.raises(InvalidArgument) as err:
        images.check_programs(labels, ["a", "b"], "u")
    assert err.value.details["field"] == "programs[1].name"
    assert err.value.details["available"] == ["a"]


def _tgz(members: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


def test_extract_takes_first_regular_file_in_memory(tmp_path: Path) -> None:
    layer = _tgz({"../../etc/evil": b"first", "second": b"2"}, dirs=("d",))
    assert images.extract_object(layer, 1 << 20) == b"first"
    assert not (tmp_path / "etc").exists()
    with pytest.raises(ImageError, match="not gzip"):
        images.extract_object(b"plain", 1 << 20)
    with pytest.raises(ImageError, match="more than"):
        images.extract_object(_tgz({"big": b"x" * 5000}), 1000)
    with pytest.raises(ImageError, match="no file"):
        images.extract_object(_tgz({}, dirs=("only-a-dir",)), 1 << 20)


def test_object_endianness_checked() -> None:
    host = 1 if sys.byteorder == "little" else 2
    other = 3 - host
    header = bytearray(b"\x7fELF" + bytes(60))
    header[5] = host
    images.check_object(bytes(header))
    header[5] = other
    with pytest.raises(ImageError) as err:
        images.check_object(bytes(header))
    assert err.value.details["reason"] == "endianness"
    with pytest.raises(ImageError, match="not an ELF"):
        images.check_object(b"#!/bin/sh\n" + bytes(30))


def test_build_derives_labels_and_is_reproducible(bpf_program: Callable[..., Path]) -> None:
    obj = bpf_program("tp_counter")
    labels = images.labels_for_object(obj)
    assert labels.programs == {"count_getpid": "tracepoint", "count_getppid": "tracepoint"}
    assert labels.maps == {"counts": "array"}  # .rodata/.data/.bss excluded
    data = obj.read_bytes()
    a = images.build_image(data, labels, platform=("linux", "amd64"))
    b = images.build_image(data, labels, platform=("linux", "amd64"))
    assert a == b
    manifest = json.loads(a.manifest)
    assert manifest["mediaType"] == oci.OCI_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [oci.OCI_LAYER_GZIP]
    assert manifest["layers"][0]["digest"] == oci.sha256_digest(a.layer)
    assert images.parse_labels(a.config) == labels
    assert images.extract_object(a.layer, 1 << 24) == data
    config = json.loads(a.config)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")


def test_platform_selection() -> None:
    index = {"manifests": [
        {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
    ]}
    assert oci.pick_platform(index, ("linux", "amd64"))["digest"] == "sha256:" + "2" * 64
    with pytest.raises(PullFailed) as err:
        oci.pick_platform(index, ("linux", "s390x"))
    assert err.value.details["available"] == ["linux/amd64", "linux/arm64"]


def test_credentials_never_printed() -> None:
    creds = oci.Credentials("user", "hunter2")
    assert "hunter2" not in repr(creds)
    from bpfman.model.requests import ImageSource

    assert "hunter2" not in repr(ImageSource("r.io/x", password="hunter2"))
    reg = RegistryConfig("r.io", username="u", password_file=Path("/nonexistent"))
    assert "password" not in repr(reg)
    with pytest.raises(PullFailed, match="password_file"):
        reg.credentials()
