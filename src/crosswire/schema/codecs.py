"""Payload codecs: one per way to write a schema. Sans-I/O: values in, values out.

A codec validates what a client sent (``load``: JSON builtins in, a typed value out) and what
the server sends (``dump``: a typed value or a plain mapping in, an ``orjson.Fragment`` of
validated JSON out, ready to embed in an envelope without encoding twice).

===========================  =====================================  ========================
written as                   codec                                  needs
===========================  =====================================  ========================
``{"a": int, "b": str}``     :class:`StructCodec` (a msgspec        (core)
                             Struct made for it)
a ``msgspec.Struct`` class   :class:`StructCodec`                   (core)
a pydantic ``BaseModel``     :class:`PydanticCodec`                 ``crosswire[pydantic]``
===========================  =====================================  ========================

Every codec rejects unknown keys at the top level of the payload (WS-Kit's strictness is the
same: nested objects follow their own schema's rules).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar, get_args

import msgspec
import orjson

from ..errors import ConfigurationError, ValidationError

__all__ = ["PayloadCodec", "PydanticCodec", "StructCodec", "codec_for", "json_schema"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class PayloadCodec(Protocol[T_co]):
    """Validates payloads in both directions."""

    #: What the schema validates into (a Struct or model class), for error messages.
    target: type[Any]
    #: One compiled call serializing an instance of ``target`` that needs no check, or None.
    dump_trusted: Callable[[Any], bytes] | None
    #: A type that a msgspec JSON decoder checks exactly as :meth:`load` does, so that the
    #: router's fast lane can decode the payload with its envelope in one call; or None.
    decode_type: Any

    def load(self, obj: Any) -> T_co:
        """A received payload (JSON builtins) as the typed value; raises ValidationError."""

    def dump(self, value: Any) -> orjson.Fragment:
        """A payload to send (typed value or mapping), validated, as JSON."""

    def dump_json(self, value: Any) -> bytes:
        """The same as :meth:`dump`, as bytes."""

    def describe(self) -> dict[str, str]:
        """Field name -> type, for docs and error messages."""


_encode_json = msgspec.json.Encoder().encode

_MSGSPEC_PATH = re.compile(r" - at `\$(.*)`$")


def _msgspec_issue(exc: msgspec.ValidationError) -> dict[str, Any]:
    text = str(exc)
    found = _MSGSPEC_PATH.search(text)
    path: list[str | int] = []
    if found:
        text = text[: found.start()]
        for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", found.group(1)):
            path.append(part[0] if part[0] else int(part[1]))
    field = re.search(r"(?:unknown|required) field `([^`]+)`", text)
    if field and not path:
        path = [field.group(1)]
    return {"path": path, "message": text}


class StructCodec(Generic[T]):
    """Payloads as msgspec Structs: fast, strict (``1`` is not ``True``, ``"1"`` is not 1).

    Values are instances of the Struct given; a Struct that does not forbid unknown fields
    itself still gets its unknown top-level keys refused here.
    """

    __slots__ = (
        "_allowed",
        "_decode",
        "_encode",
        "decode_type",
        "dump_trusted",
        "shorthand",
        "target",
    )

    def __init__(self, struct: type[T]) -> None:
        self.target = struct
        #: Whether the Struct was made from a ``{"field": type}`` mapping (its name is made up).
        self.shorthand = False
        config = struct.__struct_config__  # type: ignore[attr-defined]
        names = {f.encode_name for f in msgspec.structs.fields(struct)}  # type: ignore[arg-type]
        self._allowed = None if config.forbid_unknown_fields else frozenset(names)
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder(struct).decode
        self.dump_trusted: Callable[[Any], bytes] | None = None  # a Struct's types are unchecked
        # Decoding the Struct from JSON checks what load's msgspec.convert checks, but for
        # unknown keys, which load refuses itself when the Struct lets them through.
        self.decode_type: Any = struct if config.forbid_unknown_fields else None

    @classmethod
    def from_fields(cls, name: str, fields: Mapping[str, Any]) -> StructCodec[Any]:
        """A codec for a plain ``{"field": type}`` mapping. Fields whose type admits ``None``
        are optional (default ``None``)."""
        spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for field, kind in fields.items():
            if not isinstance(field, str) or not field.isidentifier():
                raise ConfigurationError(f"{name}: field name {field!r} is not an identifier")
            if isinstance(kind, Mapping):
                raise ConfigurationError(
                    f"{name}: field {field!r} is a mapping, not a type; describe a nested "
                    "object with a msgspec.Struct or a pydantic model (or dict[str, T] for "
                    "free-form keys)"
                )
            if _admits_none(kind):
                spec.append((field, kind, None))
            else:
                spec.append((field, kind))
        required = [s for s in spec if len(s) == 2]
        optional = [s for s in spec if len(s) == 3]
        try:
            struct = msgspec.defstruct(
                name, [*required, *optional], forbid_unknown_fields=True, kw_only=True
            )
            codec: StructCodec[Any] = StructCodec(struct)  # (msgspec checks the field types)
        except TypeError as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc
        codec.shorthand = True
        return codec

    def load(self, obj: Any) -> T:
        if type(obj) is not dict:
            raise _not_an_object(obj)
        allowed = self._allowed
        if allowed is not None and not allowed.issuperset(obj):
            raise _unknown_keys(obj, allowed)
        try:
            value: T = msgspec.convert(obj, self.target)
        except msgspec.ValidationError as exc:
            issue = _msgspec_issue(exc)
            raise ValidationError(_described(issue), [issue]) from None
        return value

    def dump(self, value: Any) -> orjson.Fragment:
        return orjson.Fragment(self.dump_json(value))

    def dump_json(self, value: Any) -> bytes:
        if not isinstance(value, self.target):
            value = self.load(value if type(value) is dict else _as_dict(value, self.target))
            return self._encode(value)
        # A Struct's constructor checks no types: check what will be sent.
        data = self._encode(value)
        try:
            self._decode(data)
        except msgspec.ValidationError as exc:
            issue = _msgspec_issue(exc)
            raise ValidationError(_described(issue), [issue]) from None
        return data

    def describe(self) -> dict[str, str]:
        hints = msgspec.structs.fields(self.target)  # type: ignore[arg-type]
        return {f.encode_name: _type_name(f.type) for f in hints}


class PydanticCodec(Generic[T]):
    """Payloads as pydantic models (``crosswire[pydantic]``).

    Validation is pydantic's strict JSON mode unless the model's config says ``strict=False``:
    ``"1"`` is not an int, an ISO string is a datetime. Fields are read and written by alias.
    Unknown top-level keys are refused whatever the model's ``extra``; values are instances of
    the model given. Model instances handed to a send are trusted: pydantic validated them when
    they were built (and on assignment with ``validate_assignment``).
    """

    __slots__ = (
        "_allowed",
        "_error",
        "_serializer",
        "_strict",
        "_validator",
        "decode_type",
        "dump_trusted",
        "target",
    )

    def __init__(self, model: type[T]) -> None:
        from pydantic import ValidationError as PydanticValidationError

        self.target = model
        self._error = PydanticValidationError
        config = model.model_config  # type: ignore[attr-defined]
        self._strict = config.get("strict", True) is not False
        self._validator = model.__pydantic_validator__  # type: ignore[attr-defined]
        self._serializer = model.__pydantic_serializer__  # type: ignore[attr-defined]
        self._allowed = None if config.get("extra") == "forbid" else _pydantic_names(model)
        self.decode_type: Any = None  # pydantic validates: the fast lane leaves it the JSON
        # The serializer itself when by_alias=True changes nothing (a keyword argument would
        # cost more than the Python call it saves).
        self.dump_trusted: Callable[[Any], bytes] | None = (
            None
            if _by_alias_matters(model.__pydantic_core_schema__)  # type: ignore[attr-defined]
            else self._serializer.to_json
        )

    def load(self, obj: Any) -> T:
        if type(obj) is not dict:
            raise _not_an_object(obj)
        allowed = self._allowed
        if allowed is not None and not allowed.issuperset(obj):
            raise _unknown_keys(obj, allowed)
        try:
            if self._strict:
                # msgspec writes integers of any size, as the envelope decoder reads them.
                value: T = self._validator.validate_json(_encode_json(obj), strict=True)
            else:
                value = self._validator.validate_python(obj)
        except self._error as exc:
            issues = [
                {"path": list(err["loc"]), "message": err["msg"]}
                for err in exc.errors(include_url=False, include_input=False)
            ]
            first = issues[0] if issues else {"path": [], "message": "invalid"}
            raise ValidationError(_described(first), issues) from None
        return value

    def dump(self, value: Any) -> orjson.Fragment:
        return orjson.Fragment(self.dump_json(value))

    def dump_json(self, value: Any) -> bytes:
        if not isinstance(value, self.target):
            value = self.load(value if type(value) is dict else _as_dict(value, self.target))
        json: bytes = self._serializer.to_json(value, by_alias=True)
        return json

    def describe(self) -> dict[str, str]:
        fields = self.target.model_fields  # type: ignore[attr-defined]
        return {f.alias or name: _type_name(f.annotation) for name, f in fields.items()}


def codec_for(owner: str, spec: Any) -> PayloadCodec[Any]:
    """The codec for a payload written as ``spec`` (see the module docstring)."""
    if isinstance(spec, Mapping):
        return StructCodec.from_fields(_struct_name(owner), spec)
    if isinstance(spec, type) and issubclass(spec, msgspec.Struct):
        return StructCodec(spec)
    if isinstance(spec, type) and _is_pydantic_model(spec):
        return PydanticCodec(spec)
    raise ConfigurationError(
        f"{owner}: a payload is a {{'field': type}} mapping, a msgspec.Struct class or a "
        f"pydantic BaseModel class, not {spec!r}"
    )


def json_schema(codec: PayloadCodec[Any], *, mode: str = "validation") -> dict[str, Any]:
    """The JSON Schema of what ``codec`` validates, by the JSON names of the fields.

    A msgspec Struct (written as one or as a ``{"field": type}`` mapping) gives
    ``msgspec.json.schema``'s: a ``$ref`` into ``$defs``, one entry per Struct (and enum). A
    pydantic model gives ``model_json_schema(by_alias=True, mode=mode)``: ``mode`` is
    ``"validation"`` for what the server reads and ``"serialization"`` for what it writes
    (they differ with computed fields and custom serializers).
    """
    target: Any = codec.target
    if isinstance(codec, PydanticCodec):
        schema: dict[str, Any] = target.model_json_schema(by_alias=True, mode=mode)
        return schema
    if isinstance(target, type) and issubclass(target, msgspec.Struct):
        return msgspec.json.schema(target)
    raise ConfigurationError(f"no JSON Schema for a payload of {target!r}")


def _is_pydantic_model(cls: type) -> bool:
    try:
        from pydantic import BaseModel
    except ImportError:
        return False
    return issubclass(cls, BaseModel)


def _struct_name(owner: str) -> str:
    cleaned = re.sub(r"\W", "_", owner.title().replace("_", ""))
    return cleaned if cleaned.isidentifier() else f"Payload_{cleaned}"


def _by_alias_matters(schema: Any) -> bool:
    """Whether ``by_alias=True`` can change what a pydantic core schema writes: a field or
    computed field with an alias at any depth (nested models included), a value typed ``Any``
    (it may hold a model with aliases), or a custom serializer that is told the options."""
    if isinstance(schema, dict):
        if "serialization_alias" in schema or schema.get("type") == "any":
            return True
        if schema.get("type") == "computed-field" and schema.get("alias"):
            return True
        serialization = schema.get("serialization")
        if isinstance(serialization, dict) and serialization.get("info_arg"):
            return True
        return any(_by_alias_matters(value) for value in schema.values())
    if isinstance(schema, list | tuple):
        return any(_by_alias_matters(value) for value in schema)
    return False


def _pydantic_names(model: Any) -> frozenset[str]:
    """The top-level keys a pydantic model accepts: each field's alias (or name), and names too
    when the model validates by name."""
    config = model.model_config
    by_name = bool(config.get("populate_by_name") or config.get("validate_by_name"))
    names: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, str):
            names.add(alias)
        elif alias is not None:  # AliasChoices / AliasPath: their first keys
            for choice in getattr(alias, "choices", [alias]):
                path = getattr(choice, "path", [choice])
                if path and isinstance(path[0], str):
                    names.add(path[0])
        if alias is None or by_name:
            names.add(name)
    return frozenset(names)


def _not_an_object(obj: Any) -> ValidationError:
    return ValidationError(
        "must be an object", [{"path": [], "message": f"expected an object, got {_json_kind(obj)}"}]
    )


def _unknown_keys(obj: dict[str, Any], allowed: frozenset[str]) -> ValidationError:
    unknown = sorted(k for k in obj if k not in allowed)
    issues: list[dict[str, Any]] = [
        {"path": [k], "message": f"Object contains unknown field `{k}`"} for k in unknown
    ]
    return ValidationError(_described(issues[0]), issues)


def _described(issue: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in issue["path"])
    message = str(issue["message"])
    return message + (f" at {where}" if where else "")


def _admits_none(kind: Any) -> bool:
    return kind is None or type(None) in get_args(kind)


def _as_dict(value: Any, target: type[Any]) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise ValidationError(
        f"expected a {target.__name__} or a mapping, got {type(value).__name__}",
        [{"path": [], "message": f"expected {target.__name__}, got {type(value).__name__}"}],
    )


def _json_kind(obj: Any) -> str:
    if obj is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(obj), type(obj).__name__
    )


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
