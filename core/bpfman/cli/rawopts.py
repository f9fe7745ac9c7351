"""Attach options without a schema: ``--key value`` pairs, for program types the
CLI has no parameter class for (a plugin installed only on the daemon's host),
for `link update` and for `load-from-image`.

A value is an int when it looks like one, a bool for ``true``/``false``,
parsed JSON when it starts with ``[`` or ``{``, and a string otherwise; an
option without a value is ``true``; a repeated option becomes a list.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from typing import Any

from bpfman.cli.args import UsageError, metadata_pairs

_INT = re.compile(r"[+-]?\d+")


def _is_option(token: str) -> bool:
    return token.startswith("-") and len(token) > 1 and not _INT.fullmatch(token)


def coerce_value(text: str) -> Any:
    """An option value as the daemon should see it (see the module docstring)."""
    if _INT.fullmatch(text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def parse_attach_options(tokens: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``--key value`` tokens after the attach TYPE -> (params, metadata)."""
    params, metadata, _ = split_attach_options(tokens)
    return params, metadata


def split_attach_options(
    tokens: Sequence[str],
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Like `parse_attach_options`, also returning the global options found
    among them (``--socket``, ``-o/--output`` keep their meaning anywhere)."""
    values: dict[str, list[Any]] = {}
    metadata: dict[str, str] = {}
    globals_: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, sep, inline = token.partition("=")
        if name in ("--socket", "-o", "--output"):
            value = inline if sep else (tokens[i + 1] if i + 1 < len(tokens) else "")
            if not value:
                raise UsageError(f"{name} needs a value")
            if name != "--socket" and value not in ("table", "json"):
                raise UsageError(f"{name}: choose table or json, not {value!r}")
            globals_["socket" if name == "--socket" else "output"] = value
            i += 1 if sep else 2
            continue
        if token in ("-m", "--metadata"):
            if i + 1 >= len(tokens):
                raise UsageError(f"{token} needs KEY=VALUE")
            try:
                metadata.update(metadata_pairs(tokens[i + 1]))
            except argparse.ArgumentTypeError as exc:
                raise UsageError(str(exc)) from None
            i += 2
            continue
        if not token.startswith("--") or len(token) == 2:
            raise UsageError(
                f"unexpected {token!r}: attach options are --name value pairs "
                "(e.g. --tracepoint sched/sched_switch)"
            )
        name, sep, inline = token[2:].partition("=")
        if sep:
            value = coerce_value(inline)
            i += 1
        elif i + 1 < len(tokens) and not _is_option(tokens[i + 1]):
            value = coerce_value(tokens[i + 1])
            i += 2
        else:
            value = True
            i += 1
        values.setdefault(name.replace("-", "_"), []).append(value)
    params = {k: v[0] if len(v) == 1 else v for k, v in values.items()}
    return params, metadata, globals_
