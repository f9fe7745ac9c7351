"""`bpfman`'s entry point: parse, make the one call, print; or run the daemon.

Exit status: 0 success, 1 the daemon answered with an error, 2 usage error
or the daemon could not be reached."""


from __future__ import annotations

import os
import sys

from bpfman.cli import VERSION_TEXT

# Only what `--version` needs is imported here; the rest in `_main` and the
# functions that use it (docs/performance.md, "CLI start-up").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from bpfman.cli.request import Call
    from bpfman.client import Client, RpcError


def _split_daemon(argv: list[str]) -> list[str] | None:
    """The daemon's own argv when the command is `daemon`, else None.

    Done before argparse so the daemon parses its options itself; a global
    ``--socket`` given before `daemon` is passed on.
    """
    socket: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("--socket", "-o", "--output"):
            if token == "--socket" and i + 1 < len(argv):
                socket = ["--socket", argv[i + 1]]
            i += 2
        elif token.startswith("-"):
            if token.startswith("--socket="):
                socket = ["--socket", token.partition("=")[2]]
            i += 1
        else:
            return [*socket, *argv[i + 1 :]] if token == "daemon" else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # `bpfman list | head -1`: the reader left. Quietly, with the status a
        # C tool killed by SIGPIPE gets; stdout goes nowhere so the final
        # flush at exit does not complain again.
        import signal

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE




def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # before importing argparse and the rest
        print(VERSION_TEXT)
        return 0
    if argv[:1] == ["__complete"]:  # hidden: the shell completion's call-back
        from bpfman.cli import completion

        return completion.main(argv[1:])
    daemon_argv = _split_daemon(argv)
    if daemon_argv is not None:
        # The client side never imports the daemon's stack.
        from bpfman.daemon import main as daemon_main

        return daemon_main.main(daemon_argv)

    from bpfman.cli import images as imagecli
    from bpfman.cli.args import UsageError
    from bpfman.cli.parser import parser_for
    from bpfman.cli.render import format_error, print_error
    from bpfman.cli.request import PrintCompletion, build_calls
    from bpfman.client import Client, DaemonUnreachable, RpcError, default_socket_path

    parser = parser_for(argv)  # only the subcommand named, when that is enough
    try:
        args = parser.parse_args(argv)
        if args.command == "attach" and {"-h", "--help"} & set(args.options):
            from bpfman.cli import attachopts

            if attachopts.params_class(args.type) is None:
                parser.parse_args(["attach", "--help"])  # prints the attach help, exits 0
        if imagecli.is_local(args):  # image build, load-from-image: not one call
            return imagecli.run_local(args, getattr(args, "socket", None)
                                      or default_socket_path(), getattr(args, "output", "table"))
        calls = build_calls(args)
    except PrintCompletion:
        from bpfman.cli.completion import bash_completion

        print(bash_completion(), end="")
        return 0
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    except UsageError as exc:
        print(f"bpfman {args.command}: error: {exc}", file=sys.stderr)
        return 2
    socket_path = getattr(args, "socket", None) or default_socket_path()
    # `call` is the raw escape hatch: its result is always printed as JSON.
    output = "json" if args.command == "call" else getattr(args, "output", "table")
    errors_as = getattr(args, "output", "table")  # JSON errors only when asked for
    done: list[tuple[Call, Any]] = []
    at = 0  # the call being made
    try:
        with Client(socket_path) as client:
            for at in range(len(calls)):
                method, params = calls[at]
                if method == "events.subscribe":
                    return _print_events(client, params["kinds"], output)
                try:
                    done.append(((method, params),
                                 imagecli.call_with_progress(client, method, params)))
                except RpcError as exc:
                    if method == "program.attach":
                        # Explain a type mismatch if we may look (only after a
                        # failure: attach alone needs no program.get grant).
                        import contextlib

                        with contextlib.suppress(RpcError):
                            _check_type(client, args.program_id, args.type)
                    if getattr(args, "ignore_missing", False) and _is_missing(exc):
                        continue
                    raise
    except RpcError as exc:
        _print_done(done, output, several=len(calls) > 1)
        text = format_error(exc)
        if len(calls) > 1:
            text += "\n  " + _stopped_at(calls, at, done)
        print_error(errors_as, text, exc.code, exc.message, exc.data)
        return 1
    except DaemonUnreachable as exc:
        hint = (
            "is your user in the socket's group?"
            if isinstance(exc.cause, PermissionError)
            else "is the daemon running? (bpfman daemon, or systemctl start bpfman.socket)"
        )
        print_error(errors_as, f"error: {exc}\n  {hint}", None, f"{exc}; {hint}", None)
        return 2
    except OSError as exc:
        message = f"lost the connection to the daemon at {socket_path}: {exc}"
        print_error(errors_as, f"error: {message}", None, message, None)
        return 2
    _print_done(done, output, several=len(calls) > 1)
    # A missing key is an answer, not an error, for the API; for a shell it
    # is a failed lookup (`bpfman map get ... || ...`).
    if len(done) == 1 and done[0][0][0] == "map.get" and done[0][1].get("value") is None:
        return 1
    return 0


def _print_done(done: list[tuple[Call, Any]], output: str, *, several: bool) -> None:
    """The results of the calls made; under -o json a command of several
    calls prints one JSON list (of the calls that were made)."""
    import json

    from bpfman.cli.render import render, terminal_width

    if output == "json" and several:
        print(json.dumps([result for _call, result in done], indent=2))
        return
    for (method, params), result in done:
        text = render(method, params, result, output, width=terminal_width())
        if text:
            print(text)


def _is_missing(exc: RpcError) -> bool:
    """The error of an unload/detach whose id does not exist."""
    kind = exc.data.get("kind") if isinstance(exc.data, dict) else None
    return kind in ("program_not_found", "link_not_found")


def _stopped_at(calls: list[Call], at: int, done: list[tuple[Call, Any]]) -> str:
    """Which id of a several-id command failed, and what was (not) done."""
    [key] = calls[at][1]  # program_id or link_id
    what = "program" if key == "program_id" else "link"
    finished = ", ".join(str(params[key]) for (_m, params), _r in done) or "none"
    untried = ", ".join(str(params[key]) for _m, params in calls[at + 1:]) or "none"
    return f"stopped at {what} {calls[at][1][key]}; done: {finished}; not tried: {untried}"


def _print_events(client: Client, kinds: list[str], output: str) -> int:
    import json

    from bpfman.cli.render import format_event

    try:
        for event in client.events(kinds):
            if output == "json":
                print(json.dumps(event), flush=True)
            else:
                print(format_event(event), flush=True)
    except KeyboardInterrupt:
        return 0
    print("error: the daemon closed the event stream", file=sys.stderr)
    return 1


def _check_type(client: Client, program_id: int, kind: str) -> None:
    # The API takes the type from the loaded program; the CLI repeats it
    # (as upstream does), so catch a mismatch before the params confuse anyone.
    from bpfman.client import RpcError

    program = client.call("program.get", {"program_id": program_id})
    actual = program.get("type")
    if actual is not None and actual != kind:
        raise RpcError(
            1000, f"program {program_id} has type {actual}, not {kind}",
            {"program_id": program_id, "type": actual},
        )


