"""The OpenRPC 1.2.6 document that `rpc.discover` returns.

Generated from the same attrs classes that validate params, so the document
cannot drift from what the daemon accepts. The JSON Schema mirrors
`bpfman.model.convert`: bytes are hex strings, enums their lower-case names,
objects refuse unknown keys (``additionalProperties: false``).
"""

from __future__ import annotations

import datetime
import enum
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from bpfman.model import convert
from bpfman.model.errors import all_error_classes
from bpfman.rpc import jsonrpc
from bpfman.rpc.methods import MethodTable

OPENRPC_VERSION = "1.2.6"
_REF = "#/components/schemas/"

_SCALARS: dict[Any, dict[str, Any]] = {
    int: {"type": "integer"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    float: {"type": "number"},
    bytes: {"type": "string", "pattern": "^(0x)?([0-9a-fA-F]{2})*$", "contentEncoding": "base16"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    type(None): {"type": "null"},
}


class SchemaBuilder:
    """Turns Python types into JSON Schema; attrs classes become named
    entries in `schemas`, referenced with ``$ref``."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self._names: dict[type, str] = {}

    def schema(self, tp: Any) -> dict[str, Any]:
        if tp is Any or tp is object or tp is None:  # None: an untyped attrs field
            return {}
        if tp in _SCALARS:
            return dict(_SCALARS[tp])
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"type": "string", "enum": [m.name.lower() for m in tp]}
        if attrs.has(tp):
            return {"$ref": _REF + self._define(tp)}
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return self._union(args)
        if origin in (list, set, frozenset) or (origin is tuple and args[-1:] == (...,)):
            return {"type": "array", "items": self.schema(args[0]) if args else {}}
        if origin is dict:
            values = self.schema(args[1]) if args else {}
            return {"type": "object", "additionalProperties": values}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if tp in (list, dict):
            return {"type": "array" if tp is list else "object"}
        # A plugin's exotic field type must not break rpc.discover for
        # everyone: describe it as "anything" and say what it was.
        return {"description": f"unsupported type {tp!r}"}

    def _union(self, args: tuple[Any, ...]) -> dict[str, Any]:
        options = [self.schema(a) for a in args]
        if len(options) == 2 and {"type": "null"} in options:
            other = options[0] if options[1] == {"type": "null"} else options[1]
            if set(other) == {"type"} and isinstance(other["type"], str):
                return {"type": [other["type"], "null"]}
        return {"anyOf": options}

    def _define(self, cls: type) -> str:
        if cls in self._names:
            return self._names[cls]
        name = cls.__name__
        if name in self.schemas:  # two plugins both calling their class "Params"
            name = f"{cls.__module__}.{cls.__qualname__}"
        self._names[cls] = name
        self.schemas[name] = {}  # placeholder first: classes may refer to themselves
        self.schemas[name] = self.object_schema(cls)
        return name

    def object_schema(self, cls: type) -> dict[str, Any]:
        attrs.resolve_types(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            properties[field.alias or field.name] = self.field_schema(field)
            if field.default is attrs.NOTHING:
                required.append(field.alias or field.name)
        out: dict[str, Any] = {
            "title": cls.__name__,
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if cls.__doc__:
            out["description"] = _clean_doc(cls.__doc__)
        if required:
            out["required"] = required
        return out

    def field_schema(self, field: attrs.Attribute) -> dict[str, Any]:
        schema = self.schema(field.type)
        if "doc" in field.metadata:
            # Siblings of $ref are ignored by older JSON Schema drafts; allOf keeps the doc.
            schema = {"allOf": [schema]} if "$ref" in schema else schema
            schema["description"] = field.metadata["doc"]
        default = _default_value(field)
        if default is not attrs.NOTHING:
            schema["default"] = default
        return schema


def _default_value(field: attrs.Attribute) -> Any:
    default = field.default
    if default is attrs.NOTHING:
        return attrs.NOTHING
    if isinstance(default, attrs.Factory):
        if default.takes_self:
            return attrs.NOTHING
        default = default.factory()
    try:
        return convert.unstructure(default)
    except Exception:
        return attrs.NOTHING


def _clean_doc(doc: str) -> str:
    return inspect.cleandoc(doc)


def _error_components() -> dict[str, Any]:
    errors: dict[str, Any] = {}
    for cls in (
        jsonrpc.ParseError,
        jsonrpc.InvalidRequest,
        jsonrpc.MethodNotFound,
        jsonrpc.InvalidParams,
    ):
        errors[cls.__name__] = {"code": cls.code, "message": cls.__name__}
    errors["InternalError"] = {
        "code": jsonrpc.INTERNAL_ERROR,
        "message": "internal error (data.incident points at the daemon's log)",
    }
    for cls in sorted(all_error_classes(), key=lambda c: (c.code, c.__name__)):
        if cls.__name__ in errors:  # errors.InvalidParams is the protocol's -32602
            continue
        doc = _clean_doc(cls.__doc__).split("\n\n")[0] if cls.__doc__ else cls.kind
        errors[cls.__name__] = {
            "code": cls.code,
            "message": doc.replace("\n", " "),
            "data": {"kind": cls.kind},
        }
    return errors


def generate(
    methods: MethodTable,
    *,
    version: str,
    extra_schemas: Mapping[str, Any] | None = None,
    attach_params: Mapping[str, type] | None = None,
) -> dict[str, Any]:
    """The OpenRPC document describing `methods`.

    `extra_schemas` maps a component name to either a ready JSON Schema
    (a dict) or an attrs class (its schema is generated like the params').
    `attach_params` maps each program type to the attrs class of its attach
    params, which travel inside ``program.attach``'s free-form ``params``
    object; each becomes the component ``attach_params.<type>``.
    """
    builder = SchemaBuilder()
    out_methods = []
    for name in sorted(methods):
        method = methods[name]
        params = [
            {
                "name": field.alias or field.name,
                "required": field.default is attrs.NOTHING,
                "schema": builder.field_schema(field),
            }
            for field in _fields(method.params_type)
        ]
        for p in params:
            if "description" in p["schema"]:
                p["description"] = p["schema"]["description"]
        entry: dict[str, Any] = {
            "name": name,
            "summary": method.summary,
            "paramStructure": "by-name",
            "params": params,
            "result": {"name": "result", "schema": builder.schema(method.result_type)},
            "x-mutates": method.mutates,
        }
        out_methods.append(entry)
    for kind, cls in sorted((attach_params or {}).items()):
        schema = builder.object_schema(cls)
        schema["x-program-type"] = kind
        builder.schemas[f"attach_params.{kind}"] = schema
    for key, value in (extra_schemas or {}).items():
        builder.schemas[key] = (
            builder.object_schema(value) if isinstance(value, type) and attrs.has(value) else value
        )
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "bpfman",
            "description": "Load, attach, track and unload eBPF programs for the host.",
            "version": version,
        },
        "methods": out_methods,
        "components": {"schemas": builder.schemas, "errors": _error_components()},
    }


def _fields(cls: type) -> tuple[attrs.Attribute, ...]:
    attrs.resolve_types(cls)
    return attrs.fields(cls)


__all__ = ["OPENRPC_VERSION", "SchemaBuilder", "generate"]
