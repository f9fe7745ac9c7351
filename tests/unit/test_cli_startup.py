"""The CLI's start-up path imports nothing heavy (docs/performance.md,
"CLI start-up"): trio, pluggy, attrs and cattrs are the daemon's."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("trio", "pluggy", "attrs", "attr", "cattrs")


def test_the_cli_imports_no_daemon_stack() -> None:
    code = ("import sys; import bpfman.cli.main; from bpfman.client import Client; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_plugin_api_is_still_there() -> None:
    from bpfman import KindSpec, hookimpl
    from bpfman.client import AsyncClient

    assert KindSpec.__name__ == "KindSpec" and hookimpl.project_name == "bpfman"

    assert AsyncClient.__module__ == "bpfman.client.trio_client"


def test_attach_options_do_not_load_the_kernel_layer() -> None:
    # `bpfman attach ID xdp --help` builds its options from the plugins' params
    # classes; those import `bpfman.dispatch`, which must not pull in the
    # kernel facade (ctypes, libbpf: a quarter of a second).
    code = ("import sys; import bpfman_xdp.params, bpfman_tc.params, bpfman.dispatch; "
            "print([m for m in ('bpfman.kernel', 'bpfman.context') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
