"""Results and errors for people: tables, chains as trees and ``key: value``
sections.

Tables fit the terminal they are printed on: when stdout is a terminal
(`terminal_width`, which honours ``COLUMNS`` as `shutil.get_terminal_size`
does), the free-text columns (METADATA, ATTACHED TO, ...) are cut with an
ellipsis, widest first, so that a row never runs past the right edge. Into
a pipe or a file nothing is cut: scripts grep whole values.
"""

from __future__ import annotations

import json
import os
import sys

from bpfman.client import RpcError

# typing only for annotations: the CLI's start-up is timed (docs/performance.md)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    Renderer = Callable[[Any, dict[str, Any], int | None], str]

#: columns whose cells may be cut to fit the terminal (free text, last resort
#: for the eye); ids, names and types are never cut
FREE_TEXT = frozenset({"METADATA", "ATTACHED TO", "VALUE", "KEY", "MODULE", "TYPES",
                       "IMAGE", "PROGRAMS", "LINKS", "PROCEED-ON"})
MIN_FREE_WIDTH = 8  # a cut column keeps at least this much (or its header)
GAP = "  "


def terminal_width() -> int | None:
    """Columns of the terminal stdout is, None when it is not a terminal."""
    try:
        if not os.isatty(sys.stdout.fileno()):
            return None
    except (AttributeError, ValueError, OSError):  # replaced or closed stdout
        return None
    return columns(sys.stdout) or None


def columns(stream: object) -> int:
    """``COLUMNS``, else the width of the terminal `stream` is, else 0: what
    `shutil.get_terminal_size` reads (not imported: the CLI's start-up is
    timed, and shutil brings bz2, lzma and zlib)."""
    try:
        wanted = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        wanted = 0
    if wanted > 0:
        return wanted
    try:
        return os.get_terminal_size(stream.fileno()).columns  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return 0


def _ellipsis() -> str:
    try:
        "…".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "..."
    return "…"


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters, the cut marked with an ellipsis."""
    if len(text) <= width:
        return text
    mark = _ellipsis()
    return text[: max(0, width - len(mark))] + mark if width > len(mark) else text[:width]


def _fit(headers: Sequence[str], widths: list[int], width: int) -> list[int]:
    """Column widths after cutting free-text columns (widest first) until the
    row fits in `width`, or every free-text column is at its minimum."""
    widths = list(widths)
    over = sum(widths) + len(GAP) * (len(widths) - 1) - width
    floors = {i: max(len(h), MIN_FREE_WIDTH) for i, h in enumerate(headers) if h in FREE_TEXT}
    while over > 0:
        cuttable = [i for i, floor in floors.items() if widths[i] > floor]
        if not cuttable:
            break
        # One character at a time from the widest: ties shrink evenly.
        widest = max(cuttable, key=lambda i: widths[i])
        widths[widest] -= 1
        over -= 1
    return widths


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                 width: int | None = None, indent: str = "", show_headers: bool = True) -> str:
    """Aligned columns; with `width`, free-text cells are cut to fit it.
    `headers` name the columns (which ones may be cut) even when not shown."""
    cells = [[_cell(c) for c in row] for row in rows]
    if show_headers or not cells:
        cells.insert(0, [str(h) for h in headers])
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    if width is not None:
        widths = _fit(headers, widths, width - len(indent))
    lines = []
    for row in cells:
        fitted = [clip(c, w) for c, w in zip(row, widths, strict=True)]
        padded = [c.ljust(w) for c, w in zip(fitted[:-1], widths[:-1], strict=True)]
        lines.append((indent + GAP.join([*padded, fitted[-1]])).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def format_fields(obj: dict[str, Any], indent: int = 0) -> str:
    """``key: value`` lines; nested objects become indented sections."""
    pad = " " * indent
    lines = []
    for key, value in obj.items():
        if isinstance(value, dict) and value and key not in ("metadata", "global_data"):
            lines.append(f"{pad}{key}:")
            lines.append(format_fields(value, indent + 2))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{pad}{key}:")
            for item in value:
                lines.append(format_fields(item, indent + 2))
        else:
            lines.append(f"{pad}{key}: {_cell(value)}")
    return "\n".join(lines)


# -- programs -----------------------------------------------------------------


def owner(program: dict[str, Any]) -> str:
    """Who loaded a program: ``bpfman`` (through the API), ``daemon (ROLE)``
    (the daemon itself, for a chain: a dispatcher, an extension copy) or
    ``unmanaged`` (anything else on the machine)."""
    found = program.get("owner") or ("bpfman" if program.get("managed") else "unmanaged")
    if found == "daemon" and program.get("daemon_role"):
        return f"daemon ({program['daemon_role']})"
    return str(found)


def _program_rows(programs: list[dict[str, Any]], width: int | None) -> str:
    rows = []
    for p in programs:
        kind = p.get("type") or (p.get("kernel") or {}).get("kernel_type", "?")
        rows.append([p["program_id"], p["name"], kind, owner(p), p.get("links"),
                     p.get("metadata")])
    return format_table(["ID", "NAME", "TYPE", "OWNER", "LINKS", "METADATA"], rows, width)


def render_program(p: dict[str, Any]) -> str:
    fields = {"program_id": p.get("program_id"), "name": p.get("name"),
              "type": p.get("type") or (p.get("kernel") or {}).get("kernel_type"),
              "owner": owner(p)}
    fields.update((k, v) for k, v in p.items()
                  if k not in fields and k not in ("managed", "daemon_role"))
    return format_fields(fields)


# -- links and chains -----------------------------------------------------------


def _option_name(param: str) -> str:
    """A parameter as its CLI option is spelled (``proceed_on``: ``proceed-on``)."""
    return param.replace("_", "-")


def render_link(r: dict[str, Any]) -> str:
    """One link: where it runs, then how (the dispatcher's mode and, for XDP,
    the driver mode), its parameters spelled as the CLI options are."""
    fields: dict[str, Any] = {
        "link_id": r.get("link_id"), "kernel_link_id": r.get("kernel_link_id"),
        "program_id": r.get("program_id"), "type": r.get("type"),
        "attached_to": r.get("summary"),
    }
    if r.get("dispatch_mode") is not None:
        fields["dispatch_mode"] = r["dispatch_mode"]
    if r.get("attach_mode") is not None:
        fields["attach_mode"] = r["attach_mode"]
    fields["params"] = {_option_name(k): v for k, v in (r.get("params") or {}).items()}
    fields["metadata"] = r.get("metadata")
    for key in ("pin_path", "created_at"):
        if key in r:
            fields[key] = r[key]
    return format_fields(fields)


def _link_rows(links: list[dict[str, Any]], width: int | None) -> str:
    rows = [
        [x["link_id"], x.get("kernel_link_id"), x["program_id"], x["type"], x.get("summary"),
         x.get("metadata")]
        for x in links
    ]
    return format_table(["ID", "KERNEL ID", "PROGRAM", "TYPE", "ATTACHED TO", "METADATA"],
                        rows, width)


def _where(attach_point: str, netns: str | None = None) -> str:
    """``TYPE:NETNS_ID:KEY`` as a person reads it: the key (an interface, a
    tracepoint, ...) and its network namespace by path, else by inode."""
    _type, _, rest = attach_point.partition(":")
    netns_id, _, key = rest.partition(":")
    if not key:  # not the daemon's usual shape: show it whole
        return attach_point
    key, _, in_key = key.partition("@")
    netns = in_key or netns
    if netns:
        return f"{key} in {netns}"
    if netns_id not in ("", "0"):
        return f"{key} in netns {netns_id}"
    return key


def render_chains(dispatchers: list[dict[str, Any]], width: int | None) -> str:
    """Per attach point one header line, then its programs in run order,
    indented (as `xdp-loader status` shows a chain)."""
    blocks = []
    for d in dispatchers:
        mode = d.get("mode")
        if d.get("attach_mode"):
            mode = f"{mode}, {d['attach_mode']}"
        program = d.get("program_id")
        header = (f"{d['type']} {_where(d['attach_point'], d.get('netns'))}  mode {mode}"
                  f"  dispatcher {program if program is not None else '-'}"
                  f"  revision {d.get('revision')}")
        slots = d.get("slots") or [{"link_id": x} for x in d.get("links", [])]
        rows = [[f"priority {_cell(s.get('priority'))}", f"program {_cell(s.get('program_id'))}",
                 s.get("name"), f"link {_cell(s.get('link_id'))}",
                 f"proceed-on {_cell(s.get('proceed_on'))}"] for s in slots]
        columns = ["PRIORITY", "PROGRAM", "NAME", "LINK", "PROCEED-ON"]
        if not any(s.get("proceed_on") for s in slots):  # tcx, cgroup: no such thing
            columns, rows = columns[:-1], [row[:-1] for row in rows]
        lines = [clip(header, width) if width else header]
        if rows:
            lines.append(format_table(columns, rows, width, indent="  ", show_headers=False))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# -- maps ----------------------------------------------------------------------


def _decoded(entry: dict[str, Any], part: str) -> str | None:
    """The BTF-decoded form of an entry's `part` ("key" or "value"), compact
    JSON; None when the map has no BTF."""
    value = entry.get(f"decoded_{part}")
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)


def render_map_value(r: dict[str, Any]) -> str:
    if r.get("value") is None:
        return "(no such key: exit status 1)"
    decoded = _decoded(r, "value")
    return decoded if decoded is not None else str(r["value"])


def render_map_dump(r: dict[str, Any], width: int | None) -> str:
    entries = r["entries"]
    if any(_decoded(e, "value") is not None for e in entries):
        # Decoded for reading; the hex key is what map get/update/delete take.
        rows = [[e["key"], _decoded(e, "key") or e["key"], _decoded(e, "value") or e["value"]]
                for e in entries]
        return format_table(["HEX KEY", "KEY", "VALUE"], rows, width)
    return format_table(["KEY", "VALUE"], [[e["key"], e["value"]] for e in entries], width)


# -- events --------------------------------------------------------------------


def format_event(event: dict[str, Any]) -> str:
    """One event line; absent ids print as ``-``."""
    return (f"{event.get('time')}  {event.get('kind', ''):<9}"
            f" program={_cell(event.get('program_id'))} link={_cell(event.get('link_id'))}"
            f" {event.get('type') or ''} {event.get('detail') or ''}").rstrip()


# -- the rest ------------------------------------------------------------------


def _plugin_rows(plugins: list[dict[str, Any]], width: int | None) -> str:
    rows = [[p["name"], p.get("version"), p.get("types"), p.get("module")] for p in plugins]
    return format_table(["NAME", "VERSION", "TYPES", "MODULE"], rows, width)


def render_image(r: dict[str, Any]) -> str:
    return format_fields(r)


def render_images(rows: list[dict[str, Any]], width: int | None = None) -> str:
    return format_table(
        ["IMAGE", "DIGEST", "PROGRAMS", "SIGNATURE", "PULLED"],
        [[r["url"], r["digest"][:19], r["programs"], r["verification"], r["pulled_at"]]
         for r in rows], width)


_IMAGE_RENDERERS: dict[str, Renderer] = {
    "image.pull": lambda r, _p, _w: render_image(r),
    "image.inspect": lambda r, _p, _w: render_image(r),
    "image.list": lambda r, _p, w: render_images(r, w),
    "image.remove": lambda r, _p, _w: "removed " + ", ".join(r["removed"]),
}


_RENDERERS: dict[str, Renderer] = {
    "program.load": lambda r, _p, w: _program_rows(r["programs"], w),
    "program.list": lambda r, _p, w: _program_rows(r, w),
    "program.get": lambda r, _p, _w: render_program(r),
    "program.attach": lambda r, _p, _w: render_link(r),
    "program.detach": lambda _r, p, _w: f"detached link {p['link_id']}",
    "program.unload": lambda _r, p, _w: f"unloaded program {p['program_id']}",
    "link.list": lambda r, _p, w: _link_rows(r, w),
    "link.get": lambda r, _p, _w: render_link(r),
    "plugin.list": lambda r, _p, w: _plugin_rows(r, w),
    "link.update": lambda r, _p, _w: render_link(r),
    "dispatcher.list": lambda r, _p, w: render_chains(r, w),
    "map.list": lambda r, _p, w: format_table(
        ["NAME", "ID", "TYPE", "KEY", "VALUE", "MAX"],
        [[m["name"], m["map_id"], m["type"], m["key_size"], m["value_size"], m["max_entries"]]
         for m in r], w),
    "map.get": lambda r, _p, _w: render_map_value(r),
    "map.update": lambda r, _p, _w: f"{r['key']} = {r['value']}",
    "map.delete": lambda r, _p, _w: f"deleted {r['key']} (was {r['value']})",
    "map.dump": lambda r, _p, w: render_map_dump(r, w),
    "daemon.info": lambda r, _p, _w: format_fields(r),
    **_IMAGE_RENDERERS,
}


def render(method: str, params: dict[str, Any], result: Any, output: str,
           width: int | None = None) -> str:
    """`result` of `method` for people (``table``) or as JSON. `width`: the
    terminal's columns (`terminal_width`), None to cut nothing."""
    renderer = _RENDERERS.get(method)
    if output == "json" or renderer is None:
        return json.dumps(result, indent=2)
    return renderer(result, params, width)


_SHOWN_DATA = {"kind", "errors", "feature", "reason", "min_version", "incident", "verifier_log"}


def format_error(err: RpcError) -> str:
    """``error: message`` and the parts of ``data`` a person needs to act."""
    lines = [f"error: {err.message}"]
    data = err.data if isinstance(err.data, dict) else {}
    for line in data.get("errors", []):
        lines.append(f"  {line}")
    if data.get("feature"):
        needs = f" (needs kernel {data['min_version']})" if data.get("min_version") else ""
        lines.append(f"  missing kernel feature: {data['feature']}{needs}")
    if data.get("incident"):
        lines.append(f"  incident {data['incident']}: see the daemon's log")
    for key, value in data.items():
        if key not in _SHOWN_DATA and value is not None:
            lines.append(f"  {key}: {_cell(value)}")
    if data.get("verifier_log"):
        lines.append("verifier log:")
        lines.extend(f"  {line}" for line in data["verifier_log"])
    return "\n".join(lines)


def print_error(output: str, text: str, code: int | None, message: str, data: Any) -> None:
    """An error for people, or under ``-o json`` one JSON object (on stderr,
    like the text): ``{"error": {"code", "message", "data"}}``."""
    if output == "json":
        text = json.dumps({"error": {"code": code, "message": message, "data": data}})
    print(text, file=sys.stderr)
