"""The bytecode image spec: labels, the layer holding the object, and building
and pushing an image (what `bpfman image build` does)."""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import attrs

from bpfman.images import oci
from bpfman.model.errors import (
    ImageError,
    InvalidArgument,
)

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
