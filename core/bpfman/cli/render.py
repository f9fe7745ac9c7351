"""Results and errors for people: tables and ``key: value`` sections."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from bpfman.client import RpcError


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
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


def _program_rows(programs: list[dict[str, Any]]) -> str:
    rows = []
    for p in programs:
        kind = p.get("type")
        if kind is None:  # not ours: show the kernel's type, marked
            kind = f"({(p.get('kernel') or {}).get('kernel_type', '?')})"
        rows.append([p["program_id"], p["name"], kind, p.get("links"), p.get("metadata")])
    return format_table(["ID", "NAME", "TYPE", "LINKS", "METADATA"], rows)


def _chain_cell(dispatcher: dict[str, Any]) -> str:
    """link:program@priority[proceed-on] per slot, or the bare link ids."""
    slots = dispatcher.get("slots")
    if not slots:
        return " ".join(str(x) for x in dispatcher["links"])
    cells = []
    for x in slots:
        cell = f"{x.get('link_id')}:{x.get('program_id')}"
        if x.get("priority") is not None:
            cell += f"@{x['priority']}"
        if x.get("proceed_on"):
            cell += f"[{','.join(x['proceed_on'])}]"
        cells.append(cell)
    return " ".join(cells)


def _link_rows(links: list[dict[str, Any]]) -> str:
    rows = [
        [x["link_id"], x["program_id"], x["type"], x.get("summary"), x.get("metadata")]
        for x in links
    ]
    return format_table(["ID", "PROGRAM", "TYPE", "ATTACHED TO", "METADATA"], rows)


def _plugin_rows(plugins: list[dict[str, Any]]) -> str:
    rows = [[p["name"], p.get("version"), p.get("types"), p.get("module")] for p in plugins]
    return format_table(["NAME", "VERSION", "TYPES", "MODULE"], rows)


def render_image(r: dict[str, Any]) -> str:
    return format_fields(r)


def render_images(rows: list[dict[str, Any]]) -> str:
    return format_table(
        ["IMAGE", "DIGEST", "PROGRAMS", "SIGNATURE", "PULLED"],
        [[r["url"], r["digest"][:19], r["programs"], r["verification"], r["pulled_at"]]
         for r in rows])


_IMAGE_RENDERERS: dict[str, Callable[[Any, dict[str, Any]], str]] = {
    "image.pull": lambda r, _p: render_image(r),
    "image.inspect": lambda r, _p: render_image(r),
    "image.list": lambda r, _p: render_images(r),
    "image.remove": lambda r, _p: "removed " + ", ".join(r["removed"]),
}


_RENDERERS: dict[str, Callable[[Any, dict[str, Any]], str]] = {
    "program.load": lambda r, _p: _program_rows(r["programs"]),
    "program.list": lambda r, _p: _program_rows(r),
    "program.get": lambda r, _p: format_fields(r),
    "program.attach": lambda r, _p: format_fields(r),
    "program.detach": lambda _r, p: f"detached link {p['link_id']}",
    "program.unload": lambda _r, p: f"unloaded program {p['program_id']}",
    "link.list": lambda r, _p: _link_rows(r),
    "link.get": lambda r, _p: format_fields(r),
    "plugin.list": lambda r, _p: _plugin_rows(r),
    "link.update": lambda r, _p: format_fields(r),
    "dispatcher.list": lambda r, _p: format_table(
        ["ATTACH POINT", "TYPE", "MODE", "DISPATCHER", "REVISION", "CHAIN (in run order)"],
        [[d["attach_point"], d["type"], d["mode"], d["program_id"], d["revision"],
          _chain_cell(d)] for d in r]),
    "map.list": lambda r, _p: format_table(
        ["NAME", "ID", "TYPE", "KEY", "VALUE", "MAX"],
        [[m["name"], m["map_id"], m["type"], m["key_size"], m["value_size"], m["max_entries"]]
         for m in r]),
    "map.get": lambda r, _p: "(no such key: exit status 1)" if r["value"] is None else r["value"],
    "map.update": lambda r, _p: f"{r['key']} = {r['value']}",
    "map.delete": lambda r, _p: f"deleted {r['key']} (was {r['value']})",
    "map.dump": lambda r, _p: format_table(
        ["KEY", "VALUE"], [[e["key"], e["value"]] for e in r["entries"]]),
    "daemon.info": lambda r, _p: format_fields(r),
    **_IMAGE_RENDERERS,
}


def render(method: str, params: dict[str, Any], result: Any, output: str) -> str:
    renderer = _RENDERERS.get(method)
    if output == "json" or renderer is None:
        return json.dumps(result, indent=2)
    return renderer(result, params)


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
