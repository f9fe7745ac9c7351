"""The OpenRPC document is generated from the attrs classes that validate params."""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs
import pytest

from bpfman.model import replies, requests
from bpfman.model.errors import all_error_classes
from bpfman.rpc import openrpc
from bpfman.rpc.methods import Method


class Mode(enum.Enum):
    NATIVE = 1
    SKB = 2


@attrs.frozen
class Inner:
    """A nested thing."""

    name: str = attrs.field(metadata={"doc": "its name"})


@attrs.frozen
class Params:
    """Every field type the generator must know."""

    count: int = attrs.field(metadata={"doc": "how many"})
    label: str = attrs.field(metadata={"doc": "a label"})
    flag: bool = attrs.field(metadata={"doc": "a switch"}, default=False)
    blob: bytes = attrs.field(metadata={"doc": "raw bytes as hex"}, default=b"")
    items: list[int] = attrs.field(metadata={"doc": "numbers"}, factory=list)
    table: dict[str, Inner] = attrs.field(metadata={"doc": "named inners"}, factory=dict)
    maybe: int | None = attrs.field(metadata={"doc": "optional number"}, default=None)
    inner: Inner | None = attrs.field(metadata={"doc": "optional inner"}, default=None)
    anything: Any = attrs.field(metadata={"doc": "free-form"}, default=None)
    mode: Mode = attrs.field(metadata={"doc": "attach mode"}, default=Mode.NATIVE)
    undocumented: float = 1.5


@attrs.frozen
class Node:
    value: int
    next: Node | None = None


async def _handler(caller: Any, params: Any) -> Any:
    return None


def table() -> dict[str, Method]:
    return {
        "thing.do": Method("thing.do", Params, Inner, _handler, "Do a thing", mutates=True),
        "thing.list": Method("thing.list", requests.NoParams, list[Inner], _handler, "List"),
        "node.get": Method("node.get", requests.NoParams, Node, _handler, "A linked list"),
    }


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/")
    return document["components"]["schemas"][ref.removeprefix("#/components/schemas/")]


def all_refs(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        own = [obj["$ref"]] if "$ref" in obj else []
        return own + [r for v in obj.values() for r in all_refs(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in all_refs(v)]
    return []


def test_document_shape() -> None:
    document = openrpc.generate(table(), version="1.2.3")
    assert document["openrpc"] == "1.2.6"
    assert document["info"]["version"] == "1.2.3"
    assert [m["name"] for m in document["methods"]] == ["node.get", "thing.do", "thing.list"]
    method = document["methods"][1]
    assert method["summary"] == "Do a thing"
    assert method["paramStructure"] == "by-name"
    assert method["x-mutates"] is True
    assert method["result"]["schema"] == {"$ref": "#/components/schemas/Inner"}
    json.dumps(document)  # it must travel as JSON


def test_params_field_types_docs_and_required() -> None:
    document = openrpc.generate(table(), version="0")
    params = {p["name"]: p for p in document["methods"][1]["params"]}
    assert list(params) == [f.name for f in attrs.fields(Params)]
    assert {n for n, p in params.items() if p["required"]} == {"count", "label"}
    schema = {n: p["schema"] for n, p in params.items()}
    assert schema["count"] == {"type": "integer", "description": "how many"}
    assert params["count"]["description"] == "how many"
    assert schema["flag"] == {"type": "boolean", "description": "a switch", "default": False}
    assert schema["blob"]["type"] == "string" and schema["blob"]["contentEncoding"] == "base16"
    assert schema["items"]["type"] == "array" and schema["items"]["items"] == {"type": "integer"}
    assert schema["items"]["default"] == []
    assert schema["table"]["additionalProperties"] == {"$ref": "#/components/schemas/Inner"}
    assert schema["maybe"]["type"] == ["integer", "null"]
    assert schema["inner"]["anyOf"] == [{"$ref": "#/components/schemas/Inner"}, {"type": "null"}]
    assert schema["anything"] == {"description": "free-form", "default": None}
    assert schema["mode"]["enum"] == ["native", "skb"] and schema["mode"]["default"] == "native"
    assert schema["undocumented"] == {"type": "number", "default": 1.5}


def test_nested_classes_become_components() -> None:
    document = openrpc.generate(table(), version="0")
    inner = document["components"]["schemas"]["Inner"]
    assert inner["type"] == "object"
    assert inner["additionalProperties"] is False
    assert inner["description"] == "A nested thing."
    assert inner["properties"]["name"] == {"type": "string", "description": "its name"}
    assert inner["required"] == ["name"]
    for ref in all_refs(document):
        resolve(document, ref)


def test_self_referencing_class() -> None:
    document = openrpc.generate(table(), version="0")
    node = document["components"]["schemas"]["Node"]
    assert node["required"] == ["value"]
    assert node["properties"]["next"]["anyOf"][0] == {"$ref": "#/components/schemas/Node"}


def test_same_class_name_from_two_places_does_not_clash() -> None:
    @attrs.frozen
    class Inner:  # shadows the module-level Inner
        other: int

    builder = openrpc.SchemaBuilder()
    first = builder.schema(globals()["Inner"])["$ref"]
    second = builder.schema(Inner)["$ref"]
    assert first != second
    assert len(builder.schemas) == 2


def test_errors_are_listed_with_their_codes() -> None:
    document = openrpc.generate(table(), version="0")
    listed = document["components"]["errors"]
    codes = {e["code"] for e in listed.values()}
    assert {-32700, -32600, -32601, -32602, -32603} <= codes
    for cls in all_error_classes():
        assert listed[cls.__name__]["code"] == cls.code
        assert listed[cls.__name__]["message"]


def test_extra_schemas_and_attach_params() -> None:
    document = openrpc.generate(
        table(),
        version="0",
        extra_schemas={"Raw": {"type": "string"}, "FromClass": Inner},
        attach_params={"widget": Params},
    )
    schemas = document["components"]["schemas"]
    assert schemas["Raw"] == {"type": "string"}
    assert schemas["FromClass"]["properties"]["name"]["type"] == "string"
    attach = schemas["attach_params.widget"]
    assert attach["x-program-type"] == "widget"
    assert attach["required"] == ["count", "label"]
    for ref in all_refs(document):
        resolve(document, ref)


@pytest.mark.parametrize("tp", [set[int], tuple[str, ...], frozenset[int]])
def test_collections_are_arrays(tp: Any) -> None:
    assert openrpc.SchemaBuilder().schema(tp)["type"] == "array"


def test_unknown_type_degrades_to_anything() -> None:
    schema = openrpc.SchemaBuilder().schema(complex)
    assert set(schema) == {"description"}


def test_the_real_api_classes() -> None:
    methods = {
        "program.load": Method(
            "program.load", requests.LoadRequest, replies.LoadReply, _handler, "Load", True
        ),
        "program.list": Method(
            "program.list", requests.ListRequest, list[replies.ProgramReply], _handler, "List"
        ),
        "program.attach": Method(
            "program.attach", requests.AttachRequest, replies.LinkReply, _handler, "Attach", True
        ),
        "daemon.info": Method(
            "daemon.info", requests.NoParams, replies.DaemonInfo, _handler, "Info"
        ),
    }
    document = json.loads(json.dumps(openrpc.generate(methods, version="0")))
    schemas = document["components"]["schemas"]
    assert {"ProgramSelector", "LoadReply", "ProgramReply", "KernelProgramInfo"} <= set(schemas)
    load = next(m for m in document["methods"] if m["name"] == "program.load")
    programs = next(p for p in load["params"] if p["name"] == "programs")
    assert programs["required"] is True
    assert programs["schema"]["items"] == {"$ref": "#/components/schemas/ProgramSelector"}
    assert schemas["ProgramSelector"]["required"] == ["name", "type"]
    for ref in all_refs(document):
        resolve(document, ref)
