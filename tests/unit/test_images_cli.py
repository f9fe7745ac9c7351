"""The image commands of the CLI: requests, progress, local build (no daemon)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bpfman.cli import images as imagecli
from bpfman.cli.main import main
from bpfman.cli.parser import build_parser
from bpfman.cli.rawopts import parse_attach_options
from bpfman.cli.request import build_request
from bpfman.images import spec as images


def parse(*argv: str) -> Any:
    return build_parser().parse_args(list(argv))


def test_load_image_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(imagecli.PASSWORD_ENV, "pw")
    args = parse("load", "image", "--image-url", "r.io/x:v1", "--programs", "xdp:pass",
                 "--pull-policy", "Always", "-g", "GLOBAL_u8=01", "--username", "u", "-m", "a=b")
    assert build_request(args) == ("program.load", {
        "image": {"url": "r.io/x:v1", "pull_policy": "Always", "username": "u", "password": "pw"},
        "programs": [{"type": "xdp", "name": "pass"}],
        "global_data": {"GLOBAL_u8": "01"}, "metadata": {"a": "b"},
    })


@pytest.mark.parametrize("argv, expected", [
    (["image", "pull", "r.io/x:v1"],
     ("image.pull", {"url": "r.io/x:v1", "pull_policy": "IfNotPresent"})),
    (["image", "pull", "r.io/x:v1", "-p", "Never"],
     ("image.pull", {"url": "r.io/x:v1", "pull_policy": "Never"})),
    (["image", "list"], ("image.list", {})),
    (["image", "remove", "r.io/x:v1"], ("image.remove", {"url": "r.io/x:v1"})),
    (["image", "inspect", "r.io/x:v1"], ("image.inspect", {"url": "r.io/x:v1"})),
])
def test_image_requests(argv: list[str], expected: tuple[str, dict[str, Any]]) -> None:
    assert build_request(parse(*argv)) == expected


def test_load_from_image_keeps_upstream_shape() -> None:
    args = parse("load-from-image", "-g", "GLOBAL_u8=01", "-i", "quay.io/b/xdp_pass:latest",
                 "xdp", "-i", "eth0", "-p", "100")
    assert imagecli.is_local(args)
    assert (args.image_url, args.type, args.options) == (
        "quay.io/b/xdp_pass:latest", "xdp", ["-i", "eth0", "-p", "100"])
    assert args.global_data == [("GLOBAL_u8", "01")]
    tokens = [imagecli.SHORT_OPTIONS.get(t, t) for t in args.options]
    assert parse_attach_options(tokens) == ({"iface": "eth0", "priority": 100}, {})


def test_program_choice_for_load_from_image() -> None:
    assert imagecli._only_program({"a": "xdp", "b": "tc"}, "xdp", "u") == "a"
    assert imagecli._only_program({"k": "probe"}, "kprobe", "u") == "k"
    assert imagecli._only_program({"t": "tc"}, "tcx", "u") == "t"
    with pytest.raises(imagecli._NoProgram, match="several programs"):
        imagecli._only_program({"a": "xdp", "b": "xdp"}, "xdp", "u")
    with pytest.raises(imagecli._NoProgram, match="no program of type tc"):
        imagecli._only_program({"a": "xdp"}, "tc", "u")


class SlowClient:
    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.4)
        return {"ok": True}


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_for_slow_pulls_only_on_a_terminal() -> None:
    tty = Tty()
    assert imagecli.call_with_progress(SlowClient(), "image.pull", {"url": "r.io/x:v1"}, tty,
                                       after=0.1) == {"ok": True}
    text = tty.getvalue()
    assert "pulling r.io/x:v1" in text and "pulled r.io/x:v1 in" in text
    pipe = io.StringIO()
    imagecli.call_with_progress(SlowClient(), "image.pull", {"url": "r.io/x:v1"}, pipe, after=0.1)
    assert pipe.getvalue() == ""
    quick = Tty()
    imagecli.call_with_progress(SlowClient(), "image.pull", {"url": "r.io/x:v1"}, quick, after=5)
    assert quick.getvalue() == ""


def test_build_writes_an_oci_layout_skopeo_reads(bpf_program: Callable[..., Path],
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    obj = bpf_program("tp_counter")
    layout = tmp_path / "layout"
    assert main(["-o", "json", "image", "build", "--path", str(obj), "--tag",
                     "reg.example/bpf/tp:v1", "--oci-layout", str(layout)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["programs"] == {"count_getpid": "tracepoint", "count_getppid": "tracepoint"}
    assert (layout / "blobs" / "sha256" / result["digest"].partition(":")[2]).exists()
    assert main(["image", "build", "--path", str(obj), "--tag", "reg.example/x:v1"]) == 2
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (cross-check only)")
    out = subprocess.run(["skopeo", "inspect", f"oci:{layout}:v1"], capture_output=True,
                         text=True, check=True, timeout=60)
    info = json.loads(out.stdout)
    assert info["Digest"] == result["digest"]
    assert json.loads(info["Labels"][images.LABEL_PROGRAMS]) == result["programs"]
