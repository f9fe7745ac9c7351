"""Dispatcher objects and extension (freplace) programs, shared by the libxdp
mode and the TC freplace mode: the dispatcher C sources beside this module
are compiled at first use, and each link's program is loaded once as an
extension of a dispatcher slot."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bpfman.model.errors import KernelFeatureMissing

if TYPE_CHECKING:  # the daemon's types; the CLI imports this package without them
    from bpfman.context import HookContext
    from bpfman.model.records import LinkRecord


def build_dispatcher_object(source: Path, *, feature: str, what: str,
                            defines: dict[str, str] | None = None) -> Path:
    """The object of a plugin's dispatcher C `source` (with `defines`), compiled
    with clang at first use into a cache directory owned by us
    (``$BPFMAN_CACHE_DIR`` or /var/cache/bpfman, else a private one under the
    system temp dir), named by a hash of the source and defines.

    :param feature: reported by `KernelFeatureMissing` ("tc_dispatcher", ...).
    :param what: its name for people ("TC dispatcher", ...).
    """
    flags = [f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    key = hashlib.sha256(source.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    stem = source.name.removesuffix(".c").removesuffix(".bpf")
    name = f"{stem}-{key}.bpf.o"  # the key covers the defines
    subdir = stem.removesuffix("_dispatcher")  # "tc", "xdp"
    candidates = [Path(os.environ.get("BPFMAN_CACHE_DIR", "/var/cache/bpfman")) / subdir,
                  Path(tempfile.gettempdir()) / f"bpfman-cache-{os.geteuid()}" / subdir]
    for cache in candidates:
        out = cache / name
        try:
            cache.mkdir(mode=0o700, parents=True, exist_ok=True)
            if cache.stat().st_uid != os.geteuid():
                continue  # someone else's directory: never trust its objects
            if out.exists():
                return out
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            cmd = [os.environ.get("BPFMAN_CLANG", "clang"), "-O2", "-g", "-target", "bpf",
                   f"-I/usr/include/{os.uname().machine}-linux-gnu", *flags,
                   "-c", str(source), "-o", str(tmp)]
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            tmp.rename(out)
            return out
        except FileNotFoundError as exc:
            raise KernelFeatureMissing(feature, f"clang is needed to build the {what}"
                                       " (apt-get install clang)") from exc
        except subprocess.CalledProcessError as exc:
            raise KernelFeatureMissing(feature, f"building the {what} failed:"
                                       f" {exc.stderr.strip()[-500:]}") from exc
        except OSError:
            continue
    raise KernelFeatureMissing(feature, f"no writable cache directory to build the {what}"
                               " in (set BPFMAN_CACHE_DIR)")


def ensure_extension(ctx: HookContext, link: LinkRecord, target_pin: Path, func: str,
                     object_path: str) -> None:
    """Make the link's pin hold the extension (freplace) form of its program,
    replacing `func` of the dispatcher pinned at `target_pin`; loaded the
    first time, with the maps of the program as loaded. Shared by the XDP
    (libxdp) and TC (freplace) dispatchers."""
    pin = Path(link.pin_path)
    if ctx.kernel.program_info(ctx.kernel.program_id_of_pin(pin)).kernel_type == "ext":
        return
    program_pin = ctx.bpffs.program_pin(link.program_id)
    tmp = pin.with_name(f"{pin.name}_ext")
    ctx.kernel.load_extension(object_path, link.details["program_name"], program_pin,
                      link.details.get("map_pin_dir"), target_pin, func, tmp)
    ctx.undo.callback(ctx.kernel.remove_pin, tmp)
    ctx.undo.callback(ctx.kernel.repin, program_pin, pin)
    ctx.kernel.repin(tmp, pin)
    ctx.kernel.remove_pin(tmp)
