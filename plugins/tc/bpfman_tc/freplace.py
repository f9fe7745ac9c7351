"""The `tc` dispatcher in freplace mode, for kernels that load extension
programs: `tc_dispatcher.bpf.c` with its config (slot count, proceed-on
masks, priorities) in .rodata, and each program loaded once as an extension
(pinned at its link's pin path, sharing the maps of the program as loaded)
and attached to stub ``prog<N>`` of every new dispatcher revision.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bpfman import KernelFeatureMissing, dispatch
from bpfman.context import HookContext
from bpfman.kernel import libxdp as kx
from bpfman.records import LinkRecord

SOURCE = Path(__file__).with_name("tc_dispatcher.bpf.c")
PROGRAM = "tc_dispatcher"
CONFIG = struct.Struct("<B3x10I10I")  # struct tc_dispatcher_config, 84 bytes


def config(masks: Sequence[int], priorities: Sequence[int]) -> bytes:
    n = len(masks)
    dispatch.check_slot_count(n)
    pad = [0] * (dispatch.MAX_SLOTS - n)
    return CONFIG.pack(n, *(m & 0xFFFFFFFF for m in masks), *pad, *priorities, *pad)


def dispatcher_object() -> Path:
    """The dispatcher object, compiled with clang at first use into a cache
    directory owned by us (``$BPFMAN_CACHE_DIR`` or /var/cache/bpfman, else
    one under the system temp dir)."""
    text = SOURCE.read_bytes()
    name = f"tc_dispatcher-{hashlib.sha256(text).hexdigest()[:16]}.bpf.o"
    candidates = [Path(os.environ.get("BPFMAN_CACHE_DIR", "/var/cache/bpfman")) / "tc",
                  Path(tempfile.gettempdir()) / f"bpfman-cache-{os.geteuid()}" / "tc"]
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
                   f"-I/usr/include/{os.uname().machine}-linux-gnu", "-c", str(SOURCE),
                   "-o", str(tmp)]
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            tmp.rename(out)
            return out
        except FileNotFoundError as exc:
            raise KernelFeatureMissing("tc_dispatcher", "clang is needed to build the TC"
                                       " dispatcher (apt-get install clang)") from exc
        except subprocess.CalledProcessError as exc:
            raise KernelFeatureMissing("tc_dispatcher", "building the TC dispatcher failed:"
                                       f" {exc.stderr.strip()[-500:]}") from exc
        except OSError:
            continue
    raise KernelFeatureMissing("tc_dispatcher", "no writable cache directory to build the"
                               " TC dispatcher in (set BPFMAN_CACHE_DIR)")


def load(ctx: HookContext, ordered: list[LinkRecord], masks: Sequence[int],
         rev_dir: Path) -> tuple[int, Path]:
    """Load a dispatcher revision in `rev_dir` with every link's extension
    attached to its slot; returns (program id, pin of the dispatcher)."""
    pin = rev_dir / "dispatcher"
    cfg = config(masks, [ln.params.get("priority", 0) for ln in ordered])
    program_id = kx.load_dispatcher(dispatcher_object(), cfg, pin, program=PROGRAM)
    for i, ln in enumerate(ordered):
        dispatch.ensure_extension(ctx, ln, pin, f"prog{i}", ln.details["object"])
        kx.attach_extension(ln.pin_path, pin, f"prog{i}", rev_dir / f"link_{i}")
    return program_id, pin
