"""The image side of the `bpfman` command.

* ``bpfman load image --image-url URL --programs TYPE:NAME ...``: `program.load`
  with an image source.
* ``bpfman image pull|list|remove|inspect``: the `image.*` methods.
* ``bpfman image build --path OBJ --tag REF [--push] [--oci-layout DIR]``: runs
  here, not in the daemon: labels from the object (libbpf's view), a
  reproducible OCI image, pushed with our own registry client (no docker,
  no podman) and/or written as an OCI image layout directory.
* ``bpfman load-from-image [-g NAME=HEX] -i IMAGE [-n NAME] TYPE [options]``:
  the announcement's one-shot form: pull, load and attach in one command.
  As upstream's, ``-i`` before TYPE is the image; after TYPE the short
  options are the type's: ``-i`` iface, ``-p`` priority, ``-d`` direction.

Registry passwords: ``--username`` takes the password from
$BPFMAN_REGISTRY_PASSWORD; upstream's ``-r/--registry-auth BASE64(user:pass)``
is accepted too (it is on the command line, so visible in ``ps``: prefer the
variable). Neither is ever printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bpfman.cli.args import add_application_option, load_options, program_selector, registry_auth

# Every command line imports this module (its parsers, `build_request`):
# pathlib, threading and typing only where used (docs/performance.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any, TextIO

PASSWORD_ENV = "BPFMAN_REGISTRY_PASSWORD"
POLICIES = ["Always", "IfNotPresent", "Never"]
#: short attach options of load-from-image, after TYPE (upstream's shape)
SHORT_OPTIONS = {"-i": "--iface", "-p": "--priority", "-d": "--direction"}
#: label types (what `image build` writes) that a requested type accepts
LABEL_TYPES = {"kprobe": {"probe", "kprobe"}, "kretprobe": {"probe", "kprobe"},
               "uprobe": {"probe", "uprobe"}, "uretprobe": {"probe", "uprobe"},
               "tcx": {"tc", "tcx"}, "fentry": {"tracing"}, "fexit": {"tracing"}}
PULLING_METHODS = {"image.pull", "image.inspect", "program.load"}

EXAMPLES = {
    "image": "examples:\n"
             "  bpfman image build --path counter.bpf.o --tag reg.local/bpf/counter:v1 --push\n"
             "  bpfman image pull reg.local/bpf/counter:v1\n"
             "  bpfman image pull -i quay.io/bpfman-bytecode/xdp_pass:latest -p Always\n"
             "  bpfman image list\n"
             "  bpfman image inspect reg.local/bpf/counter:v1\n"
             "  bpfman image remove reg.local/bpf/counter:v1",
    "load-from-image": "examples:\n"
                       "  bpfman load-from-image -g GLOBAL_u8=01"
                       " -i quay.io/bpfman-bytecode/xdp_pass:latest xdp -i eth0 -p 100\n"
                       "  bpfman load-from-image -i reg.local/bpf/counter:v1 -n count_getpid"
                       " tracepoint --tracepoint syscalls/sys_enter_getpid",
}


def _auth_options(parser: argparse.ArgumentParser, *, upstream: bool = False) -> None:
    parser.add_argument("--username",
                        help=f"registry user; the password comes from ${PASSWORD_ENV}")
    if upstream:  # where upstream's CLI has it
        parser.add_argument("-r", "--registry-auth", type=registry_auth, metavar="BASE64",
                            help="base64 of USER:PASSWORD (upstream's form; visible in ps,"
                            f" prefer --username and ${PASSWORD_ENV})")


def _path(text: str) -> Path:
    from pathlib import Path

    return Path(text)


def _policy_option(parser: argparse.ArgumentParser, *flags: str) -> None:
    parser.add_argument(*flags, dest="pull_policy", choices=POLICIES, default="IfNotPresent",
                        help="when to contact the registry (default IfNotPresent)")


def add_parsers(load_sub: Any, command: Callable[..., argparse.ArgumentParser],
                common: argparse.ArgumentParser, add_global: Callable[..., None],
                add_metadata: Callable[..., None]) -> None:
    li = load_sub.add_parser("image", parents=[common], help="from a bytecode image")
    li.add_argument("--image-url", "-i", required=True, help="image reference")
    li.add_argument(
        "--programs", nargs="+", action="extend", required=True, metavar="TYPE:NAME",
        type=program_selector, help="programs to load, e.g. tracepoint:count_getpid",
    )
    _policy_option(li, "--pull-policy", "-p")
    _auth_options(li, upstream=True)
    add_global(li)
    add_metadata(li)
    add_application_option(li)
    li.add_argument("--map-owner-id", type=int, help="share the maps of this program")

    image = command("image", "bytecode images: build, pull, list, inspect, remove")
    sub = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    pull = sub.add_parser("pull", parents=[common], help="pull an image into the daemon's cache")
    # IMAGE, or upstream's -i/--image-url IMAGE
    pull.add_argument("url", metavar="IMAGE", nargs="?")
    pull.add_argument("-i", "--image-url", dest="image_url", metavar="IMAGE",
                      help="the image (upstream's form of IMAGE)")
    _policy_option(pull, "--pull-policy", "-p")
    _auth_options(pull, upstream=True)
    sub.add_parser("list", parents=[common], help="images in the daemon's cache")
    rm = sub.add_parser("remove", parents=[common], help="remove an image from the cache")
    rm.add_argument("url", metavar="IMAGE")
    ins = sub.add_parser("inspect", parents=[common],
                         help="digests, labels and signature verdict from the registry")
    ins.add_argument("url", metavar="IMAGE")
    _auth_options(ins)
    build = sub.add_parser("build", parents=[common],
                           help="package an object as a bytecode image (no docker needed)")
    build.add_argument("--path", "-f", required=True, type=_path, help="the ELF object")
    build.add_argument("--tag", "-t", required=True, help="REGISTRY/REPOSITORY:TAG")
    build.add_argument("--push", action="store_true", help="push it to the registry")
    build.add_argument("--oci-layout", type=_path, metavar="DIR",
                       help="write it as an OCI image layout directory")
    build.add_argument("--plain-http", action="store_true",
                       help="talk http, not https, to the registry (lab registries)")
    build.add_argument("--platform", default=None, metavar="OS/ARCH",
                       help="platform recorded in the config (default: this host)")
    _auth_options(build)

    lfi = command("load-from-image",
                  "pull, load and attach in one command (upstream's one-shot form)")
    lfi.add_argument("-i", "--image-url", required=True, help="image reference")
    lfi.add_argument("-n", "--name", help="program function name (default: the image's only"
                     " program of TYPE)")
    _policy_option(lfi, "--pull-policy")
    _auth_options(lfi)
    add_global(lfi)
    add_metadata(lfi)
    add_application_option(lfi, "--application")
    lfi.add_argument("type", metavar="TYPE", help="program type, e.g. tracepoint, xdp, tc")
    lfi.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _auth(args: argparse.Namespace) -> dict[str, str]:
    from bpfman.cli.args import UsageError

    encoded = getattr(args, "registry_auth", None)
    if encoded is not None:
        if getattr(args, "username", None):
            raise UsageError("give --username or -r/--registry-auth, not both")
        return {"username": encoded[0], "password": encoded[1]}
    if not getattr(args, "username", None):
        return {}
    return {"username": args.username, "password": os.environ.get(PASSWORD_ENV, "")}


def _pull_url(args: argparse.Namespace) -> str:
    from bpfman.cli.args import UsageError

    if (args.url is None) == (args.image_url is None):
        raise UsageError("give the image once: IMAGE or -i/--image-url IMAGE")
    return args.url if args.url is not None else args.image_url


def build_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]] | None:
    """(method, params) for the single-call image commands, else None."""
    if args.command == "load" and args.source == "image":
        return "program.load", {
            "image": {"url": args.image_url, "pull_policy": args.pull_policy, **_auth(args)},
            "programs": args.programs,
            **load_options(args),
        }
    if args.command != "image":
        return None
    action = args.image_command
    if action == "pull":
        return "image.pull", {"url": _pull_url(args), "pull_policy": args.pull_policy,
                              **_auth(args)}
    if action == "list":
        return "image.list", {}
    if action == "remove":
        return "image.remove", {"url": args.url}
    if action == "inspect":
        return "image.inspect", {"url": args.url, **_auth(args)}
    return None


def is_local(args: argparse.Namespace) -> bool:
    """Commands that are not one method call."""
    return (args.command == "image" and args.image_command == "build") or (
        args.command == "load-from-image")


# -- progress ---------------------------------------------------------------------------


def call_with_progress(client: Any, method: str, params: dict[str, Any],
                       stream: TextIO | None = None, *, after: float = 1.0) -> Any:
    """`client.call`, with an elapsed-time line on a terminal for pulls that
    take more than `after` seconds (or always with BPFMAN_PROGRESS=1)."""
    stream = stream or sys.stderr
    image = (params.get("image") or {}).get("url") or params.get("url")
    forced = os.environ.get("BPFMAN_PROGRESS") == "1"
    if method not in PULLING_METHODS or not image or not (forced or stream.isatty()):
        return client.call(method, params)
    import threading

    done = threading.Event()
    started = time.monotonic()

    def show() -> None:
        shown = False
        spinner = "|/-\\"
        tick = 0
        while not done.wait(0.1 if shown else after):
            tick += 1
            stream.write(f"\rpulling {image} {spinner[tick % 4]} "
                         f"{time.monotonic() - started:.1f}s")
            stream.flush()
            shown = True
        if shown:
            stream.write(f"\rpulled {image} in {time.monotonic() - started:.1f}s\x1b[K\n")
            stream.flush()

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        return client.call(method, params)
    finally:
        done.set()
        thread.join()


# -- local commands ---------------------------------------------------------------------


def run_local(args: argparse.Namespace, socket_path: str, output: str) -> int:
    if args.command == "image":
        return _build(args, output)
    return _load_from_image(args, socket_path, output)


def _build(args: argparse.Namespace, output: str) -> int:
    import trio

    from bpfman.images import oci
    from bpfman.images import spec as images
    from bpfman.model.errors import BpfmanError

    if not args.push and args.oci_layout is None:
        print("bpfman image build: error: nothing to do: give --push and/or --oci-layout DIR",
              file=sys.stderr)
        return 2
    platform = tuple(args.platform.split("/", 1)) if args.platform else None
    try:
        ref = oci.ImageRef.parse(args.tag, field="tag")
        labels = images.labels_for_object(args.path)
        image = images.build_image(args.path.read_bytes(), labels, filename=args.path.name,
                                   platform=platform)  # type: ignore[arg-type]
        if args.oci_layout is not None:
            _write_layout(args.oci_layout, image, str(ref))
        if args.push:
            creds = None
            if args.username:
                creds = oci.Credentials(args.username, os.environ.get(PASSWORD_ENV, ""))

            async def push() -> str:
                async with oci.open_registry(ref, plain_http=args.plain_http, credentials=creds,
                                             timeout=30) as client:
                    return await images.push_image(client, ref.repository, ref.tag or "latest",
                                                   image)

            trio.run(push)
    except BpfmanError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for key, value in exc.data().items():
            if key != "kind":
                print(f"  {key}: {value}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = {"tag": str(ref), "digest": image.digest, "pushed": args.push,
              "programs": labels.programs, "maps": labels.maps}
    if output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"{'pushed' if args.push else 'built'} {ref} {image.digest}")
        print(f"  programs: {', '.join(f'{k}={v}' for k, v in labels.programs.items())}")
        print(f"  maps: {', '.join(f'{k}={v}' for k, v in labels.maps.items()) or '-'}")
    return 0


def _write_layout(root: Path, image: Any, ref: str) -> None:
    """An OCI image layout (what skopeo/podman read with oci:DIR)."""
    from bpfman.images import oci

    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for data in (image.config, image.layer, image.manifest):
        (blobs / oci.sha256_digest(data).partition(":")[2]).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [{
        "mediaType": oci.OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest),
        "annotations": {"org.opencontainers.image.ref.name": ref.rpartition(":")[2]}}]}
    (root / "index.json").write_text(json.dumps(index))


def _load_from_image(args: argparse.Namespace, socket_path: str, output: str) -> int:
    from bpfman.cli.args import UsageError
    from bpfman.cli.rawopts import split_attach_options
    from bpfman.cli.render import format_error, format_fields, print_error
    from bpfman.client import Client, DaemonUnreachable, RpcError

    tokens = [SHORT_OPTIONS.get(t, t) for t in args.options]
    try:
        attach_params, link_metadata, _ = split_attach_options(tokens)
    except UsageError as exc:
        print(f"bpfman load-from-image: error: {exc}", file=sys.stderr)
        return 2
    source = {"url": args.image_url, "pull_policy": args.pull_policy, **_auth(args)}
    try:
        with Client(socket_path) as client:
            pulled = call_with_progress(client, "image.pull", dict(source))
            name = args.name or _only_program(pulled["programs"], args.type, args.image_url)
            # Load exactly what was just pulled (and verified): by its digest.
            pinned = {"url": f"{args.image_url.partition('@')[0]}@{pulled['digest']}",
                      "pull_policy": "IfNotPresent", **_auth(args)}
            params: dict[str, Any] = {"image": pinned,
                                      "programs": [{"name": name, "type": args.type}]}
            params.update(load_options(args))
            [program] = client.call("program.load", params)["programs"]
            try:
                link = client.call("program.attach", {
                    "program_id": program["program_id"], "params": attach_params,
                    **({"metadata": link_metadata} if link_metadata else {})})
            except RpcError:
                client.call("program.unload", {"program_id": program["program_id"]})
                raise
    except RpcError as exc:
        print_error(output, format_error(exc), exc.code, exc.message, exc.data)
        return 1
    except _NoProgram as exc:
        print(f"bpfman load-from-image: error: {exc}", file=sys.stderr)
        return 2
    except DaemonUnreachable as exc:
        print_error(output, f"error: {exc}\n  is the daemon running?", None, str(exc), None)
        return 2
    result = {"program": program, "link": link}
    if output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"loaded program {program['program_id']} ({program['name']}) from"
              f" {args.image_url}\nattached link {link['link_id']}")
        print(format_fields({"summary": link.get("summary")}, 2))
    return 0


class _NoProgram(Exception):
    pass


def _only_program(programs: dict[str, str], kind: str, url: str) -> str:
    accepted = LABEL_TYPES.get(kind, {kind})
    matching = sorted(n for n, t in programs.items() if t in accepted)
    if len(matching) == 1:
        return matching[0]
    listing = ", ".join(f"{n} ({t})" for n, t in sorted(programs.items())) or "none"
    why = "no program" if not matching else "several programs"
    raise _NoProgram(f"{url} has {why} of type {kind}: {listing}; choose one with -n NAME")
