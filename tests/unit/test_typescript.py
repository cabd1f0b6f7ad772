"""JSON Schema -> TypeScript (crosswire.typescript): each construct, then whole routers."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import pydantic
import pytest

from crosswire import App, ConfigurationError, Endpoint, Router, message, rpc
from crosswire.typescript import TypeScriptWriter, app_types, router_types, to_typescript


def ts(schema: Any, names: dict[str, str] | None = None) -> str:
    return TypeScriptWriter().type_of(schema, names)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "string"),
        ({"type": "string", "format": "date-time"}, "string"),
        ({"type": "integer"}, "number"),
        ({"type": "number"}, "number"),
        ({"type": "boolean"}, "boolean"),
        ({"type": "null"}, "null"),
        ({"type": ["string", "null"]}, "string | null"),
        ({"type": "string", "nullable": True}, "string | null"),
        ({"const": "chat"}, '"chat"'),
        ({"const": 3}, "3"),
        ({"const": None}, "null"),
        ({"const": {"a": 1}}, "unknown"),
        ({"enum": ["a", "b", 1, True, None]}, '"a" | "b" | 1 | true | null'),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, "number | string"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "number"),
        ({"anyOf": [{"type": "integer"}, {}]}, "unknown"),
        ({"allOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}, "A & B"),
        ({"type": "array", "items": {"type": "string"}}, "string[]"),
        (
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "(string | null)[]",
        ),
        ({"type": "array"}, "unknown[]"),
        (
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
            },
            "[number, string]",
        ),
        ({"type": "array", "prefixItems": [{"type": "integer"}]}, "[number, ...unknown[]]"),
        (
            {"type": "array", "items": [{"type": "integer"}, {"type": "boolean"}]},
            "[number, boolean]",
        ),
        ({"$ref": "#/$defs/A"}, "A"),
        ({"$ref": "#/definitions/B"}, "B"),
        ({"$ref": "#/$defs/Missing"}, "unknown"),
        ({"$ref": "https://example.com/other.json"}, "unknown"),
        (True, "unknown"),
        ({}, "unknown"),
        (False, "never"),
        ({"type": "object"}, "{\n  [key: string]: unknown;\n}"),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            "{\n  [key: string]: number;\n}",
        ),
        ({"not": {"type": "string"}}, "unknown"),
    ],
)
def test_each_construct(schema: Any, expected: str) -> None:
    assert ts(schema, {"A": "A", "B": "B"}) == expected


def test_objects_required_optional_quoted_and_index_signatures() -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "description": "Who."},
            "display-name": {"type": "string"},
            "nick": {"type": "string"},
        },
        "required": ["id", "display-name"],
        "additionalProperties": {"type": "boolean"},
    }
    assert ts(schema) == (
        "{\n"
        "  /** Who. */\n"
        "  id: number;\n"
        '  "display-name": string;\n'
        "  nick?: string;\n"
        "  [key: string]: boolean | number | string | undefined;\n"
        "}"
    )
    closed = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert ts(closed) == "{\n  a: string;\n}"
    assert ts({"type": "object", "properties": {}, "additionalProperties": False}) == "{}"
    nested = {
        "type": "object",
        "properties": {
            "p": {"type": "object", "properties": {"q": {"type": "integer"}}, "required": ["q"]}
        },
    }
    assert ts(nested) == "{\n  p?: {\n    q: number;\n  };\n}"


def test_defs_become_named_declarations_once() -> None:
    schema = {
        "$ref": "#/$defs/Move",
        "$defs": {
            "Move": {
                "title": "Move",
                "type": "object",
                "description": "A move.",
                "properties": {"to": {"$ref": "#/$defs/Pos"}, "kind": {"$ref": "#/$defs/Kind"}},
                "required": ["to", "kind"],
            },
            "Pos": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
            "Kind": {"enum": ["walk", "run"]},
        },
    }
    assert to_typescript(schema, "Step") == (
        "/** A move. */\nexport interface Step {\n  to: Pos;\n  kind: Kind;\n}\n\n"
        "export interface Pos {\n  x: number;\n}\n\n"
        'export type Kind = "walk" | "run";\n'
    )
    writer = TypeScriptWriter()
    assert writer.add(schema) == "Move"
    assert writer.add(schema) == "Move"  # the same schema: declared once
    other = {
        "$ref": "#/$defs/Pos",
        "$defs": {"Pos": {"type": "object", "properties": {"y": {"type": "string"}}}},
    }
    assert writer.add(other) == "Pos2"  # another Pos: another name
    assert writer.render().count("export interface Pos") == 2
    assert writer.add({"title": "string", "type": "string"}) == "StringType"


class Node(msgspec.Struct):
    value: int
    children: list[Node] = []


def test_recursive_defs() -> None:
    text = to_typescript(msgspec.json.schema(Node), "Node")
    assert text == "export interface Node {\n  value: number;\n  children?: Node[];\n}\n"


class Pos(msgspec.Struct):
    x: int
    y: int


class Move(msgspec.Struct):
    to: Pos
    path: list[Pos]
    mode: Literal["walk", "run"]
    note: str | None = None


class Profile(pydantic.BaseModel):
    user_name: str = pydantic.Field(alias="userName")
    age: int | None = None

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def adult(self) -> bool:
        return (self.age or 0) >= 18


def test_router_types_for_each_schema_kind() -> None:
    router = Router()
    router.on(message("chat", {"text": str, "room": str | None}), lambda ctx: None)
    router.on(message("MOVE", Move), lambda ctx: None)
    router.on(message("PING"), lambda ctx: None)
    router.rpc(rpc("ADD", {"a": int}, "ADD_RESULT", {"sum": int}), lambda ctx: None)
    router.rpc(rpc("SET", Profile, "GOT", Profile), lambda ctx: None)
    router.topic("room:{id}:seat:{n}", data={"name": str})
    router.topic("lobby")
    text = router_types(router, "mod:router")
    assert text.startswith("// Generated by `crosswire types mod:router`: do not edit")
    assert "export interface Chat {\n  text: string;\n  room?: string | null;\n}" in text
    assert (
        'export interface Move {\n  to: Pos;\n  path: Pos[];\n  mode: "run" | "walk";\n'
        "  note?: string | null;\n}"
    ) in text
    assert text.count("export interface Pos {") == 1
    # pydantic: by alias; the request as validated, the response as serialized.
    assert "export interface Profile {\n  userName: string;\n  age?: number | null;\n}" in text
    assert (
        "export interface Profile2 {\n  userName: string;\n  age?: number | null;\n"
        "  adult: boolean;\n}" in text
    )
    assert "export interface RoomSeatJoin {\n  name: string;\n}" in text
    assert (
        'export interface Messages {\n  "chat": Chat;\n  "MOVE": Move;\n  "PING": undefined;\n}'
    ) in text
    assert (
        "export interface Rpcs {\n"
        '  "ADD": { request: Add; response: AddResult; responseType: "ADD_RESULT" };\n'
        '  "SET": { request: Profile; response: Profile2; responseType: "GOT" };\n}'
    ) in text
    assert (
        'export interface Topics {\n  "lobby": undefined;\n  "room:{id}:seat:{n}": '
        "RoomSeatJoin;\n}" in text
    )


def test_app_types_gathers_every_routers_and_refuses_clashes() -> None:
    one, two = Router(), Router()
    one.on(message("A", {"a": int}), lambda ctx: None)
    two.on(message("B", {"b": str}), lambda ctx: None)
    app = App(endpoints=[Endpoint("/one", one), Endpoint("/two", two)])
    text = app_types(app, "m:app")
    assert '"A": A;' in text and '"B": B;' in text
    empty = app_types(App(Router()), "m:empty")
    assert "export interface Messages {}" in empty and "export interface Topics {}" in empty

    three = Router()
    three.on(message("A", {"a": str}), lambda ctx: None)
    clash = App(endpoints=[Endpoint("/one", one), Endpoint("/three", three)])
    with pytest.raises(ConfigurationError, match="two routers handle A"):
        app_types(clash)
