"""The one cattrs converter: JSON-compatible data <-> attrs classes.

- Unknown keys are refused (`forbid_extra_keys`), so a typo in a request is
  an error with its field path instead of being silently ignored.
- `bytes` travel as lower-case hex strings (global data, map keys/values).
- Enums travel as the lower-case member name.
- `datetime` travels as ISO 8601 text.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import cattrs
from cattrs.cols import list_structure_factory
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.json import make_converter
from cattrs.v import format_exception


def _structure_hex(value: Any, _type: type) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected a hex string, got {type(value).__name__}")
    text = value.removeprefix("0x").replace(" ", "")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"not a hex string: {value!r}") from None


def _strict(kind: type) -> Any:
    """JSON scalars are taken as they are: "12" is not an int, 1 is not a
    string, "false" is not a bool (cattrs would coerce all of these)."""

    def structure(value: Any, _type: type) -> Any:
        if type(value) is kind or (kind is float and type(value) is int):
            return value
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")

    return structure


def _make() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=True, prefer_attrib_converters=False)
    for scalar in (int, str, bool, float):
        conv.register_structure_hook(scalar, _strict(scalar))

    def _list_factory(t: Any) -> Any:
        base = list_structure_factory(t, conv)

        def structure(value: Any, _t: Any) -> Any:
            if not isinstance(value, list):  # a string is not a list of characters
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return base(value, _t)

        return structure

    conv.register_structure_hook_factory(
        lambda t: getattr(t, "__origin__", None) is list, _list_factory
    )
    conv.register_unstructure_hook(bytes, lambda b: b.hex())
    conv.register_structure_hook(bytes, _structure_hex)
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())
    conv.register_structure_hook(datetime, lambda v, _t: datetime.fromisoformat(v))
    conv.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum),
        lambda e: e.name.lower(),
    )

    def _structure_enum(value: Any, t: type[enum.Enum]) -> enum.Enum:
        if isinstance(value, str):
            try:
                return t[value.upper()]
            except KeyError:
                pass
        choices = ", ".join(m.name.lower() for m in t)
        raise ValueError(f"{value!r} is not one of: {choices}")

    conv.register_structure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _structure_enum
    )
    return conv


converter: cattrs.Converter = _make()


def structure(data: Any, cls: type) -> Any:
    """Structure `data` into `cls`; raises cattrs errors for the RPC layer to map."""
    return converter.structure(data, cls)


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)


def _format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)  # from the strict hooks above: already precise
    base = format_exception(exc, type_)
    # cattrs says only "invalid value" for a ValueError; the reason matters.
    if type(exc) in (ValueError, TypeError) and str(exc) and str(exc) not in base:
        return f"{base}: {exc}"
    return base


def describe_errors(exc: BaseException, prefix: str = "$") -> list[str]:
    """Human-readable error lines with field paths (`$.params.priority: ...`)."""
    return cattrs.transform_error(exc, path=prefix, format_exception=_format_exception)


__all__ = ["converter", "describe_errors", "make_dict_structure_fn", "structure", "unstructure"]
