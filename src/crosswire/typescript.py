"""TypeScript types for an App's messages, RPCs and topics, from their schemas' JSON Schema.

``crosswire types module:app`` prints what :func:`app_types` returns::

    export interface Chat { text: string; room: string; }
    ...
    export interface Messages { "chat": Chat; }
    export interface Rpcs { "ADD": { request: Add; response: AddResult }; }
    export interface Topics { "room:{id}": RoomJoin; }

:class:`TypeScriptWriter` turns JSON Schema (what ``msgspec.json.schema`` and pydantic's
``model_json_schema`` write) into TypeScript declarations; ``docs/typescript.md`` has the
mapping, and what it cannot express (it becomes ``unknown``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .app import App
from .errors import ConfigurationError
from .router import Router
from .schema import MessageSchema, PayloadCodec
from .schema.codecs import StructCodec, json_schema

__all__ = ["TypeScriptWriter", "app_types", "router_types", "to_typescript"]

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
#: Names a declaration cannot take (keywords, primitive and global types, the maps).
# fmt: off
_RESERVED = frozenset((
    "any", "boolean", "break", "case", "catch", "class", "const", "continue", "debugger",
    "default", "delete", "do", "else", "enum", "export", "extends", "false", "finally",
    "for", "function", "if", "import", "in", "instanceof", "never", "new", "null", "number",
    "object", "return", "string", "super", "switch", "symbol", "this", "throw", "true",
    "try", "typeof", "undefined", "unknown", "var", "void", "while", "with", "Array",
    "Boolean", "Date", "Error", "Function", "Map", "Messages", "Number", "Object",
    "Promise", "Record", "Rpcs", "Set", "String", "Symbol", "Topics",
))
# fmt: on


def _pascal(text: str) -> str:
    """``room:{id}`` -> ``RoomId``; ``ADD_RESULT`` -> ``AddResult``; ``chat`` -> ``Chat``."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    name = "".join(w[:1].upper() + (w[1:].lower() if w.isupper() else w[1:]) for w in words)
    if not name or not (name[0].isalpha() or name[0] == "_"):
        name = "T" + name
    return name


def _key(name: str) -> str:
    return name if _IDENTIFIER.match(name) else json.dumps(name)


def _literal(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | str):
        return json.dumps(value)
    return "unknown"  # an object or array constant: TypeScript has no literal for it


def _union(parts: Iterable[str]) -> str:
    unique: list[str] = []
    for part in parts:
        if part not in unique:
            unique.append(part)
    if "unknown" in unique:
        return "unknown"
    if len(unique) > 1 and "never" in unique:
        unique.remove("never")
    return " | ".join(unique) if unique else "never"


def _wrap(type_: str) -> str:
    """Parenthesized when ``type_`` is a union or intersection (for ``T[]``)."""
    depth = 0
    for char in type_:
        if char in "({[<":
            depth += 1
        elif char in ")}]>":
            depth -= 1
        elif char in "|&" and depth == 0:
            return f"({type_})"
    return type_


def _comment(text: Any, indent: str) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    lines = text.strip().replace("*/", "* /").splitlines()
    if len(lines) == 1:
        return f"{indent}/** {lines[0]} */\n"
    body = "".join(f"{indent} * {line}".rstrip() + "\n" for line in lines)
    return f"{indent}/**\n{body}{indent} */\n"


@dataclass
class _Declaration:
    name: str
    key: str  # the JSON Schema it came from, canonical: the same schema is declared once
    text: str = ""


@dataclass
class TypeScriptWriter:
    """Collects named TypeScript declarations from JSON Schema documents.

    :meth:`add` declares a document's root (and every ``$defs`` entry it refers to) under a
    name and returns that name; a definition met again with the same name and schema is
    declared once, a different one with a taken name gets a number (``Pos2``).
    :meth:`render` returns the declarations, in the order they were added.
    """

    declarations: dict[str, _Declaration] = field(default_factory=dict)

    def add(self, schema: Mapping[str, Any], name: str | None = None) -> str:
        """Declare ``schema`` (a JSON Schema document) as ``name`` (by default its root
        ``$ref`` target's name, or its ``title``); returns the TypeScript name to use."""
        defs: Mapping[str, Any] = {**schema.get("definitions", {}), **schema.get("$defs", {})}
        names: dict[str, str] = {}
        root_ref = self._local_ref(schema.get("$ref"))
        root_is_ref = root_ref is not None and root_ref in defs and len(schema) <= 3
        if root_is_ref and name is not None:
            names[str(root_ref)] = self._name_for(name, defs[str(root_ref)])
        for def_name, definition in defs.items():
            if def_name not in names:
                names[def_name] = self._name_for(_pascal(def_name), definition)
        pending = [n for n in defs if not self.declarations[names[n]].text]
        for def_name in pending:
            self._declare(names[def_name], defs[def_name], names)
        if root_is_ref:
            return names[str(root_ref)]
        root = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
        chosen = self._name_for(name or _pascal(str(schema.get("title") or "Payload")), root)
        if not self.declarations[chosen].text:
            self._declare(chosen, root, names)
        return chosen

    def type_of(self, schema: Any, names: Mapping[str, str] | None = None) -> str:
        """The TypeScript type of ``schema`` (a JSON Schema, inline); ``names`` maps
        ``$defs`` names to the TypeScript names they were declared as."""
        return self._type(schema, names or {}, "")

    def render(self) -> str:
        """Every declaration, in order, separated by blank lines."""
        return "\n".join(d.text for d in self.declarations.values() if d.text)

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _local_ref(ref: Any) -> str | None:
        if isinstance(ref, str):
            for prefix in ("#/$defs/", "#/definitions/"):
                if ref.startswith(prefix):
                    return ref[len(prefix) :]
        return None

    def _name_for(self, wanted: str, schema: Any) -> str:
        key = json.dumps(schema, sort_keys=True, default=str)
        base = wanted if wanted not in _RESERVED else wanted + "Type"
        candidate, n = base, 1
        while candidate in self.declarations:
            if self.declarations[candidate].key == key:
                return candidate
            n += 1
            candidate = f"{base}{n}"
        self.declarations[candidate] = _Declaration(candidate, key)
        return candidate

    def _declare(self, name: str, schema: Any, names: Mapping[str, str]) -> None:
        doc = _comment(schema.get("description"), "") if isinstance(schema, dict) else ""
        if self._is_object(schema) and not self._composite(schema):
            body = self._object(schema, names, "")
            text = f"{doc}export interface {name} {body}\n"
        else:
            text = f"{doc}export type {name} = {self._type(schema, names, '')};\n"
        self.declarations[name].text = text

    @staticmethod
    def _is_object(schema: Any) -> bool:
        if not isinstance(schema, dict):
            return False
        kind = schema.get("type")
        return kind == "object" or (kind is None and "properties" in schema)

    @staticmethod
    def _composite(schema: Mapping[str, Any]) -> bool:
        return any(k in schema for k in ("anyOf", "oneOf", "allOf", "enum", "const", "$ref"))

    def _type(self, schema: Any, names: Mapping[str, str], indent: str) -> str:
        if schema is True or schema == {}:
            return "unknown"
        if schema is False:
            return "never"
        if not isinstance(schema, dict):
            return "unknown"
        base = self._base(schema, names, indent)
        if schema.get("nullable") is True:  # (OpenAPI 3.0)
            base = _union([base, "null"])
        return base

    def _base(self, schema: Mapping[str, Any], names: Mapping[str, str], indent: str) -> str:
        if "$ref" in schema:
            ref = self._local_ref(schema["$ref"])
            return names.get(ref, "unknown") if ref is not None else "unknown"
        if "const" in schema:
            return _literal(schema["const"])
        if "enum" in schema and isinstance(schema["enum"], list):
            return _union(_literal(v) for v in schema["enum"])
        for combinator in ("anyOf", "oneOf"):
            if isinstance(schema.get(combinator), list):
                return _union(self._type(s, names, indent) for s in schema[combinator])
        if isinstance(schema.get("allOf"), list):
            parts = [self._type(s, names, indent) for s in schema["allOf"]]
            parts = [p for p in parts if p != "unknown"] or ["unknown"]
            return " & ".join(_wrap(p) for p in parts)
        kind = schema.get("type")
        if isinstance(kind, list):
            return _union(self._type({**schema, "type": k}, names, indent) for k in kind)
        if kind == "string":
            return "string"
        if kind in ("integer", "number"):
            return "number"
        if kind == "boolean":
            return "boolean"
        if kind == "null":
            return "null"
        if kind == "array":
            return self._array(schema, names, indent)
        if self._is_object(schema):
            return self._object(schema, names, indent)
        return "unknown"

    def _array(self, schema: Mapping[str, Any], names: Mapping[str, str], indent: str) -> str:
        items = schema.get("items", True)
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            parts = [self._type(s, names, indent) for s in prefix]
            if items is not False:
                parts.append(f"...{_wrap(self._type(items, names, indent))}[]")
            return f"[{', '.join(parts)}]"
        if isinstance(items, list):  # (draft 4-2019: items as a tuple)
            return f"[{', '.join(self._type(s, names, indent) for s in items)}]"
        return f"{_wrap(self._type(items, names, indent))}[]"

    def _object(self, schema: Mapping[str, Any], names: Mapping[str, str], indent: str) -> str:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        inner = indent + "  "
        lines: list[str] = []
        types: list[str] = []
        for prop, prop_schema in properties.items():
            prop_type = self._type(prop_schema, names, inner)
            types.append(prop_type)
            optional = "" if prop in required else "?"
            description = prop_schema.get("description") if isinstance(prop_schema, dict) else None
            lines.append(
                _comment(description, inner) + f"{inner}{_key(prop)}{optional}: {prop_type};"
            )
        extra = schema.get("additionalProperties")
        if schema.get("patternProperties"):
            extra = True if extra is None or extra is False else extra
        if extra is None and not properties:
            extra = True
        if extra is not None and extra is not False:
            value = self._type(extra, names, inner)
            if value != "unknown" and types:
                # An index signature must admit every property's type too.
                value = _union(
                    [value, *types, *([] if required >= set(properties) else ["undefined"])]
                )
            lines.append(f"{inner}[key: string]: {value};")
        if not lines:
            return "{}"
        return "{\n" + "\n".join(lines) + f"\n{indent}}}"


def to_typescript(schema: Mapping[str, Any], name: str) -> str:
    """The TypeScript declarations of one JSON Schema document, its root named ``name``."""
    writer = TypeScriptWriter()
    writer.add(schema, name)
    return writer.render()


def _codec_name(codec: PayloadCodec[Any], fallback: str) -> str | None:
    """The name of a payload's root declaration: its class's, or ``fallback`` for a
    ``{"field": type}`` mapping (whose Struct's name is made up)."""
    if isinstance(codec, StructCodec) and codec.shorthand:
        return fallback
    return _pascal(codec.target.__name__)


@dataclass
class _Collected:
    writer: TypeScriptWriter = field(default_factory=TypeScriptWriter)
    messages: dict[str, tuple[str, MessageSchema[Any]]] = field(default_factory=dict)
    rpcs: dict[str, tuple[str, str, MessageSchema[Any]]] = field(default_factory=dict)
    topics: dict[str, tuple[str, Any]] = field(default_factory=dict)


def _payload_type(
    writer: TypeScriptWriter, schema: MessageSchema[Any] | None, mode: str, fallback: str
) -> str:
    if schema is None or schema.payload is None:
        return "undefined"
    codec = schema.payload
    return writer.add(json_schema(codec, mode=mode), _codec_name(codec, fallback))


def _collect(router: Router, into: _Collected) -> None:
    writer = into.writer
    responses = {id(s.response) for s in router.schemas if s.response is not None}
    for schema in router.schemas:
        if schema.response is not None:
            if schema.type in into.rpcs and into.rpcs[schema.type][2] is not schema:
                raise ConfigurationError(f"two routers handle {schema.type} with two schemas")
            request = _payload_type(writer, schema, "validation", _pascal(schema.type))
            response = schema.response
            reply = _payload_type(writer, response, "serialization", _pascal(response.type))
            into.rpcs[schema.type] = (request, reply, schema)
        elif id(schema) not in responses:
            if schema.type in into.messages and into.messages[schema.type][1] is not schema:
                raise ConfigurationError(f"two routers handle {schema.type} with two schemas")
            payload = _payload_type(writer, schema, "validation", _pascal(schema.type))
            into.messages[schema.type] = (payload, schema)
    for topic in router.topics:
        if topic.name in into.topics and into.topics[topic.name][1] is not topic.data:
            raise ConfigurationError(f"two routers declare topic {topic.name!r}")
        if topic.data is None:
            data = "undefined"
        else:
            fallback = _pascal(re.sub(r"\{[^}]*\}", " ", topic.name)) + "Join"
            data = writer.add(json_schema(topic.data), _codec_name(topic.data, fallback))
        into.topics[topic.name] = (data, topic.data)


def _render(collected: _Collected, header: str) -> str:
    out = [header, collected.writer.render()]
    lines = [f"  {json.dumps(k)}: {v[0]};" for k, v in collected.messages.items()]
    out.append(
        "/** Each message type the app's routers handle (router.on), with its payload "
        "(undefined: none). */\n" + _map("Messages", lines)
    )
    lines = [
        f"  {json.dumps(k)}: {{ request: {req}; response: {resp}; "
        f"responseType: {json.dumps(schema.response.type if schema.response else '')} }};"
        for k, (req, resp, schema) in collected.rpcs.items()
    ]
    out.append(
        "/** Each RPC the app's routers answer (router.rpc): its request's payload, and its "
        "response's type and payload. */\n" + _map("Rpcs", lines)
    )
    lines = [f"  {json.dumps(k)}: {v[0]};" for k, v in collected.topics.items()]
    out.append(
        "/** Each topic (or pattern) clients may join (router.topic), with the data a join "
        "carries (undefined: none declared). */\n" + _map("Topics", lines)
    )
    return "\n".join(part for part in out if part)


def _map(name: str, lines: list[str]) -> str:
    if not lines:
        return f"export interface {name} {{}}\n"
    return f"export interface {name} {{\n" + "\n".join(lines) + "\n}\n"


def _header(source: str) -> str:
    return (
        f"// Generated by `crosswire types {source}`: do not edit; run the command again.\n"
        f"// TypeScript types of the messages, RPCs and topics of {source}, from the JSON\n"
        "// Schema of their schemas (docs/typescript.md).\n"
    )


def router_types(router: Router, source: str = "a router") -> str:
    """The TypeScript declarations for one router (see :func:`app_types`)."""
    collected = _Collected()
    _collect(router, collected)
    return _render(collected, _header(source))


def app_types(app: App, source: str = "an app") -> str:
    """The TypeScript declarations for every router ``app`` serves (its endpoints'): one
    declaration per payload (a message's, an RPC request's and response's, a topic join's),
    named after its msgspec Struct or pydantic model, or after the message type for a
    ``{"field": type}`` mapping; then the maps ``Messages`` (type -> payload), ``Rpcs`` (type
    -> ``{request, response, responseType}``) and ``Topics`` (pattern -> join data).
    ``source`` (``module:app``) is named in the header. Endpoints served by something other
    than a Router (a RoomServer, plain hooks) declare no schemas and add nothing; two
    routers handling one type with different schemas are refused (ConfigurationError)."""
    collected = _Collected()
    for endpoint in app.endpoints.values():
        if isinstance(endpoint.handler, Router):
            _collect(endpoint.handler, collected)
    return _render(collected, _header(source))
