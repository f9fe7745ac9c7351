"""Shell completion, computed from the same sources as the command itself.

``bpfman completion bash`` prints a small bash function that, at each TAB,
runs ``bpfman __complete WORD...`` (a hidden command: the words after
``bpfman`` up to the one being completed) and turns its answer into
``COMPREPLY``. `complete` walks the argparse tree of `parser.build_parser`
with those words; after ``attach PROGRAM_ID TYPE`` (and
``load-from-image ... TYPE``) it walks the parser that `attachopts` builds
from that type's params class, the one the daemon validates with.

Why a call-back rather than a static script with per-type tables: the
script is typically written once (``/etc/bash_completion.d/bpfman``, or a
package's install step), while plugins come and go; a call-back sees the
plugins installed now, so a third-party type completes with no step beyond
``pip install``. It also keeps one engine, in Python and unit-testable with
word lists; the bash side is glue. The price is one process per TAB: the
argparse tree alone (most commands) is cheap, and only completion after
``attach ID`` imports the plugins (~0.3 s), as ``bpfman attach`` itself does,
and after ``daemon`` the daemon's modules (~0.7 s) for its own options.

What is completed: subcommands and options everywhere; choices (``-o``,
``--pull-policy``, `list` what, a params field's ``in_``/Literal values or
its ``metadata["choices"]`` such as ``--proceed-on``); program types of the
installed plugins after ``attach ID``, ``--type``/``-p`` of `list`, and as
``TYPE:`` prefixes after ``--programs`` (then ``TYPE:NAME`` from the object
``load file --path`` names); event kinds after ``events --kind``; API
methods after ``call``; file names after path options (``--path``,
``--socket``, ``-t`` of uprobe, ...) and directories after
``--oci-layout``; `bpfman daemon`'s own
options (``--config`` a file, ``--log-level`` levels); interface names after
``--iface`` (the host's; none once ``--netns`` is given). After an option
whose value is free text (an id, a priority, metadata) nothing is offered.

Protocol (bash side in `bash_completion`): the first line of the answer is
``words``, ``nospace`` (candidates end in ``:``), ``files`` or ``dirs``; the
other lines are the candidates, or for files/dirs the text to hand to
``compgen``. Bash splits words at ``:`` and ``=`` (COMP_WORDBREAKS); such
pieces are joined again here and the candidates are cut to the part bash
replaces.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

WORDBREAKS = ":="
FILES, DIRS, WORDS, NOSPACE = "files", "dirs", "words", "nospace"


class Reply:
    """Candidates for the word being completed (already filtered by it)."""

    def __init__(self, words: Sequence[str] = (), mode: str = WORDS, text: str = "") -> None:
        self.words = list(words)
        self.mode = mode
        self.text = text  # files/dirs: what to hand to compgen

    def lines(self) -> list[str]:
        return [self.mode, self.text] if self.mode in (FILES, DIRS) else [self.mode, *self.words]

    def __repr__(self) -> str:
        return f"Reply({self.words!r}, {self.mode!r}, {self.text!r})"


# -- the sources: plugins, event kinds, interfaces ------------------------------------------


def installed_types() -> list[str]:
    """Program types of the installed plugins (what `attach ID TYPE` knows)."""
    from bpfman.cli import attachopts

    return sorted(attachopts.installed_kinds())


def event_kinds() -> list[str]:
    from bpfman.model.requests import EVENT_KINDS

    return list(EVENT_KINDS)


def interfaces() -> list[str]:
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


# -- the engine --------------------------------------------------------------------------


def complete(words: Sequence[str], parser: argparse.ArgumentParser | None = None) -> Reply:
    """Candidates for the last of `words` (the words after ``bpfman``, as
    bash's COMP_WORDS has them; the last may be empty)."""
    tokens, cut = _join_wordbreaks(list(words) or [""])
    if parser is None:
        from bpfman.cli.parser import parser_for

        # the command word typed: only its subtree is built (as `bpfman` does)
        parser = parser_for(tokens[:-1])
    reply = _walk(parser, tokens[:-1], tokens[-1], attach=False)
    if cut and reply.mode in (WORDS, NOSPACE):
        # bash replaces only the text after the last ':' or '='
        reply.words = [w[len(cut):] for w in reply.words if w.startswith(cut)]
    return reply


def _join_wordbreaks(words: list[str]) -> tuple[list[str], str]:
    """Join ``xdp`` ``:`` ``pa`` back into ``xdp:pa``; also the part of the
    last word that bash does not replace (``xdp:``), "" when not split."""
    out: list[str] = []
    glue = False
    for word in words:
        is_break = bool(word) and all(c in WORDBREAKS for c in word)
        if out and (glue or is_break):
            out[-1] += word
        else:
            out.append(word)
        glue = is_break
    last = words[-1]
    replaced = "" if last and all(c in WORDBREAKS for c in last) else last
    return out, out[-1][: len(out[-1]) - len(replaced)] if out[-1] != last else ""


def _arity(action: argparse.Action) -> tuple[int, float]:
    nargs = action.nargs
    if nargs is None:
        return 1, 1
    if isinstance(nargs, int):
        return nargs, nargs
    return {"?": (0, 1), "*": (0, float("inf")), "+": (1, float("inf"))}.get(
        nargs, (0, float("inf")))


def _is_option(word: str) -> bool:
    return len(word) > 1 and word.startswith("-") and not word.lstrip("-").isdigit()


def _walk(parser: argparse.ArgumentParser, done: list[str], cur: str, *, attach: bool,
          ) -> Reply:
    """Follow `done` through `parser` (down its subcommands), then complete `cur`.
    `attach`: `parser` is a type's attach parser (attachopts)."""
    positionals = [a for a in parser._actions if not a.option_strings]
    options = parser._option_string_actions
    given: dict[str, list[str]] = {}  # dest -> values, for the value sources
    pos, pos_taken = 0, 0
    pending: argparse.Action | None = None
    pending_taken = 0
    only_positional = False
    i = 0
    while i < len(done):
        if pos < len(positionals) and positionals[pos].nargs == argparse.REMAINDER:
            return _remainder(parser, given, done[i:], cur)
        word = done[i]
        i += 1
        if pending is not None:
            low, high = _arity(pending)
            if pending_taken < low or (pending_taken < high and not _is_option(word)):
                given.setdefault(pending.dest, []).append(word)
                pending_taken += 1
                continue
            pending = None
        if word == "--" and not only_positional:
            only_positional = True
            continue
        if _is_option(word) and not only_positional:
            flag, eq, value = word.partition("=")
            action = options.get(flag if eq and flag.startswith("--") else word)
            if action is None and not eq and word[:2] in options:  # -p100
                action, value = options[word[:2]], word[2:]
            if action is None:
                continue
            given.setdefault(action.dest, [])
            if _arity(action)[1] > 0:
                if value and (eq or word not in options):
                    given[action.dest].append(value)
                else:
                    pending, pending_taken = action, 0
            continue
        if pos >= len(positionals):
            continue
        action = positionals[pos]
        if isinstance(action, argparse._SubParsersAction):
            child = action.choices.get(word)
            if child is not None and word in DELEGATED and parser.prog == "bpfman":
                child = DELEGATED[word]()  # it parses its own options
            return Reply() if child is None else _walk(child, done[i:], cur, attach=attach)
        given.setdefault(action.dest, []).append(word)
        pos_taken += 1
        if pos_taken >= _arity(action)[1]:
            pos, pos_taken = pos + 1, 0
    # the word being completed
    if pos < len(positionals) and positionals[pos].nargs == argparse.REMAINDER:
        return _remainder(parser, given, [], cur)
    if pending is not None:
        low, high = _arity(pending)
        if pending_taken < low or (pending_taken < high and not _is_option(cur)
                                   and cur != "-"):
            return _values(parser, pending, given, cur, attach=attach)
    if _is_option(cur) and not only_positional:
        flag, eq, value = cur.partition("=")
        if eq and flag.startswith("--"):
            action = options.get(flag)
            if action is None or _arity(action)[1] == 0:
                return Reply()
            reply = _values(parser, action, given, value, attach=attach)
            if reply.mode in (WORDS, NOSPACE):
                reply.words = [f"{flag}={w}" for w in reply.words]
            return reply
        return Reply(_filter(_option_names(parser, given), cur))
    if cur == "-":
        return Reply(_filter(_option_names(parser, given), cur))
    if pos >= len(positionals):  # nothing positional left: the options
        return Reply(_option_names(parser, given)) if cur == "" else Reply()
    action = positionals[pos]
    if isinstance(action, argparse._SubParsersAction):
        return Reply(_filter(_visible_commands(action), cur))
    reply = _values(parser, action, given, cur, attach=attach)
    if not reply.words and reply.mode == WORDS and _arity(action)[0] == 0 and cur == "":
        return Reply(_option_names(parser, given))  # an optional positional, no candidates
    return reply


def _daemon_parser() -> argparse.ArgumentParser:
    from bpfman.daemon.main import build_parser

    return build_parser()


#: subcommands whose options another parser owns
DELEGATED: dict[str, Callable[[], argparse.ArgumentParser]] = {"daemon": _daemon_parser}


def _visible_commands(action: argparse._SubParsersAction) -> list[str]:
    listed = [c.dest for c in action._choices_actions]  # those with a help line
    return listed or list(action.choices)


#: actions that keep one value (given twice, the last wins): not offered again
SINGLE = (argparse._StoreAction, argparse._StoreConstAction, argparse.BooleanOptionalAction)


def _option_names(parser: argparse.ArgumentParser, given: dict[str, list[str]]) -> list[str]:
    """The options to offer: not hidden, and not one already given that
    takes a single value (a list, -m, ... can be given again)."""
    names: list[str] = []
    shorts = getattr(parser, "bpfman_shorts", None)
    for action in parser._actions:
        if action.help is argparse.SUPPRESS:
            continue
        if action.dest in given and isinstance(action, SINGLE):
            continue
        for flag in action.option_strings:
            if shorts is not None and not flag.startswith("--") and flag not in shorts:
                continue
            if shorts is not None and flag == "--help":
                continue
            # the API's spelling (--proceed_on) is accepted, not offered
            if flag.startswith("--") and "_" in flag and flag.replace("_", "-") in (
                    action.option_strings):
                continue
            names.append(flag)
    return names


def _filter(words: Sequence[str], cur: str) -> list[str]:
    return [w for w in words if w.startswith(cur)]


# Value sources of the CLI's own options and positionals, by dest. The attach
# parsers (fields of a plugin's params class) use only `ATTACH_VALUES`: a
# plugin's field named "type" is not a program type.
def _types(cur: str, given: dict[str, list[str]]) -> Reply:
    return Reply(_filter(installed_types(), cur))


def _type_prefixes(cur: str, given: dict[str, list[str]]) -> Reply:
    """``TYPE:`` then, once `load file --path` names a readable object,
    ``TYPE:NAME`` of its programs (and only the types it has programs for)."""
    programs = object_programs(given["path"][-1]) if given.get("path") else None
    kind, colon, rest = cur.partition(":")
    if colon:
        if programs is None or ":" in rest:
            return Reply()  # no object to read, or fentry's FUNCTION: free
        return Reply(_filter([f"{kind}:{name}" for name, label in sorted(programs.items())
                              if _accepts(kind, label)], cur))
    types = installed_types()
    if programs is not None:
        types = [t for t in types if any(_accepts(t, label) for label in programs.values())]
    return Reply(_filter([f"{t}:" for t in types], cur), NOSPACE)


def object_programs(path: str) -> dict[str, str] | None:
    """Program name -> label type of an ELF object here (as `image build`
    labels it), None when it cannot be read."""
    obj = Path(path).expanduser()
    if not obj.is_file():  # not a device or a fifo that would block a TAB
        return None
    try:
        from bpfman.images.spec import labels_for_object

        return labels_for_object(obj).programs
    except Exception:  # not there yet, not an object, no libbpf: no names
        return None


def _accepts(kind: str, label: str) -> bool:
    from bpfman.cli.images import LABEL_TYPES

    return label in LABEL_TYPES.get(kind, {kind})


def _kinds(cur: str, given: dict[str, list[str]]) -> Reply:
    return Reply(_filter(event_kinds(), cur))


def _methods(cur: str, given: dict[str, list[str]]) -> Reply:
    from bpfman.rpc.methods import BY_NAME  # the API's method table

    return Reply(_filter(sorted(BY_NAME), cur))


def _files(cur: str, given: dict[str, list[str]]) -> Reply:
    return Reply(mode=FILES, text=cur)


def _dirs(cur: str, given: dict[str, list[str]]) -> Reply:
    return Reply(mode=DIRS, text=cur)


def _ifaces(cur: str, given: dict[str, list[str]]) -> Reply:
    if given.get("netns"):
        return Reply()  # another namespace's interfaces: not ours to list
    return Reply(_filter(interfaces(), cur))


def _get_target(cur: str, given: dict[str, list[str]]) -> Reply:
    return Reply(_filter(["program", "link"], cur)) if not given.get("target") else Reply()


Source = Callable[[str, dict[str, list[str]]], Reply]
CLI_VALUES: dict[str, Source] = {
    "type": _types, "programs": _type_prefixes, "kind": _kinds, "path": _files,
    "socket": _files, "oci_layout": _dirs, "target": _get_target,
    "state_dir": _dirs, "bpffs": _dirs,  # bpfman daemon's
    "method": _methods,
}
ATTACH_VALUES: dict[str, Source] = {
    "iface": _ifaces, "netns": _files, "cgroup": _dirs, "socket": _files,
}
#: attach fields whose value is a path for some types only (uprobe's binary)
ATTACH_PATH_FIELDS = {("target", "uprobe"), ("target", "uretprobe")}


def _values(parser: argparse.ArgumentParser, action: argparse.Action,
            given: dict[str, list[str]], cur: str, *, attach: bool) -> Reply:
    """Candidates for a value of `action`."""
    choices = _action_choices(action)
    if choices is not None:
        if _arity(action)[1] > 1:  # a list: each value once
            choices = [c for c in choices if c not in given.get(action.dest, ())]
        return Reply(_filter(choices, cur))
    if attach:
        kind = getattr(parser, "bpfman_kind", "")
        if (action.dest, kind) in ATTACH_PATH_FIELDS:
            return _files(cur, given)
        source = ATTACH_VALUES.get(action.dest)
    else:
        source = CLI_VALUES.get(action.dest)
    if source is None and isinstance(action.type, type) and issubclass(action.type, Path):
        source = _files
    return Reply() if source is None else source(cur, given)


def _action_choices(action: argparse.Action) -> list[str] | None:
    hinted = getattr(action, "completions", None)  # attachopts: metadata["choices"]
    if hinted:
        return [str(c) for c in hinted]
    if action.choices is None or isinstance(action, argparse._SubParsersAction):
        return None
    metavar = action.metavar
    if isinstance(metavar, str) and metavar.startswith("{") and metavar.endswith("}"):
        return metavar[1:-1].split(",")  # the shown choices, not the hidden aliases
    return [str(c) for c in action.choices]


def _remainder(parser: argparse.ArgumentParser, given: dict[str, list[str]],
               done: list[str], cur: str) -> Reply:
    """The words after ``attach ID TYPE`` and ``load-from-image ... TYPE``: the
    type's own options. Nothing for `link update` (the link's type is the
    daemon's to know) nor for a type no installed plugin has."""
    kind = (given.get("type") or [""])[-1]
    if not kind:
        return Reply()
    from bpfman.cli import attachopts

    cls = attachopts.params_class(kind)
    if cls is None:
        return Reply()
    typed = attachopts.build_parser(kind, cls)
    typed.bpfman_kind = kind  # type: ignore[attr-defined]
    if parser.prog.endswith("load-from-image"):
        from bpfman.cli.images import SHORT_OPTIONS

        # after TYPE it takes --name value pairs and only these short flags
        typed.bpfman_shorts = {*SHORT_OPTIONS, "-m"}  # type: ignore[attr-defined]
    return _walk(typed, done, cur, attach=True)


# -- the bash side -----------------------------------------------------------------------


def bash_completion() -> str:
    """The script `bpfman completion bash` prints (sourceable)."""
    return r"""# bash completion for bpfman (from `bpfman completion bash`).
# Candidates come from `bpfman __complete`, so they follow the installed plugins.
_bpfman() {
    local cur=${COMP_WORDS[COMP_CWORD]-} cmd=${COMP_WORDS[0]} mode
    local -a out
    type -P -- "$cmd" >/dev/null 2>&1 || cmd=bpfman
    mapfile -t out < <("$cmd" __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" "$cur" 2>/dev/null)
    mode=${out[0]-}
    out=("${out[@]:1}")
    COMPREPLY=()
    case $mode in
        files|dirs)
            compopt -o filenames 2>/dev/null
            local IFS=$'\n'
            if [[ $mode == files ]]; then
                COMPREPLY=($(compgen -f -- "${out[0]-}"))
            else
                COMPREPLY=($(compgen -d -- "${out[0]-}"))
            fi ;;
        nospace)
            compopt -o nospace 2>/dev/null
            COMPREPLY=("${out[@]}") ;;
        words)
            COMPREPLY=("${out[@]}") ;;
    esac
}
complete -F _bpfman bpfman
"""


def main(words: Sequence[str]) -> int:
    """``bpfman __complete WORD...``: one candidate per line after the mode line."""
    import logging

    logging.disable(logging.CRITICAL)  # a broken plugin is the daemon's to report
    try:
        reply = complete(words)
    except Exception:  # a TAB never prints a traceback into the user's line
        return 1
    sys.stdout.write("".join(line + "\n" for line in reply.lines()))
    return 0
