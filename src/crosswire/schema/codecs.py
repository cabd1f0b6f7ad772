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
import types
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar, get_args

import msgspec
import orjson

from ..errors import ConfigurationError, ValidationError

__all__ = ["PayloadCodec", "PydanticCodec", "StructCodec", "codec_for"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class PayloadCodec(Protocol[T_co]):
    """Validates payloads in both directions."""

    #: What the schema validates into (a Struct or model class), for error messages.
    target: type[Any]

    def load(self, obj: Any) -> T_co:
        """A received payload (JSON builtins) as the typed value; raises ValidationError."""

    def dump(self, value: Any) -> orjson.Fragment:
        """A payload to send (typed value or mapping), validated, as JSON."""

    def dump_json(self, value: Any) -> bytes:
        """The same as :meth:`dump`, as bytes."""

    def describe(self) -> dict[str, str]:
        """Field name -> type, for docs and error messages."""


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
    """Payloads as msgspec Structs: fast, strict (``1`` is not ``True``, ``"1"`` is not 1)."""

    __slots__ = ("_encode", "strict", "target")

    def __init__(self, struct: type[T]) -> None:
        self.target = struct
        config = struct.__struct_config__  # type: ignore[attr-defined]
        if config.forbid_unknown_fields:
            self.strict: type[Any] = struct
        else:  # a subclass that refuses unknown keys; values are still instances of ``struct``
            self.strict = types.new_class(
                struct.__name__, (struct,), {"forbid_unknown_fields": True}
            )
        self._encode = msgspec.json.Encoder().encode

    @classmethod
    def from_fields(cls, name: str, fields: Mapping[str, Any]) -> StructCodec[Any]:
        """A codec for a plain ``{"field": type}`` mapping. Fields whose type admits ``None``
        are optional (default ``None``)."""
        spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for field, kind in fields.items():
            if not isinstance(field, str) or not field.isidentifier():
                raise ConfigurationError(f"{name}: field name {field!r} is not an identifier")
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
        except TypeError as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc
        return StructCodec(struct)

    def load(self, obj: Any) -> T:
        if type(obj) is not dict:
            raise ValidationError(
                "payload must be an object",
                [{"path": [], "message": f"expected an object, got {_json_kind(obj)}"}],
            )
        try:
            value: T = msgspec.convert(obj, self.strict)
        except msgspec.ValidationError as exc:
            issue = _msgspec_issue(exc)
            where = ".".join(str(p) for p in issue["path"])
            raise ValidationError(
                f"invalid payload: {issue['message']}" + (f" at {where}" if where else ""),
                [issue],
            ) from None
        return value

    def dump(self, value: Any) -> orjson.Fragment:
        return orjson.Fragment(self.dump_json(value))

    def dump_json(self, value: Any) -> bytes:
        if not isinstance(value, self.target):
            value = self.load(value if type(value) is dict else _as_dict(value, self.target))
        return self._encode(value)

    def describe(self) -> dict[str, str]:
        hints = msgspec.structs.fields(self.target)  # type: ignore[arg-type]
        return {f.encode_name: _type_name(f.type) for f in hints}


class PydanticCodec(Generic[T]):
    """Payloads as pydantic models (``crosswire[pydantic]``)."""

    __slots__ = ("_error", "_serializer", "_validate", "target")

    def __init__(self, model: type[T]) -> None:
        from pydantic import ConfigDict
        from pydantic import ValidationError as PydanticValidationError

        self._error = PydanticValidationError

        self.target = model
        if model.model_config.get("extra") != "forbid":  # type: ignore[attr-defined]
            # A subclass that refuses unknown keys; values are still instances of ``model``.
            model = types.new_class(
                model.__name__,
                (model,),
                {},
                lambda ns: ns.update({"model_config": ConfigDict(extra="forbid")}),
            )
        self._validate = model.__pydantic_validator__.validate_python  # type: ignore[attr-defined]
        self._serializer = model.__pydantic_serializer__  # type: ignore[attr-defined]

    def load(self, obj: Any) -> T:
        if type(obj) is not dict:
            raise ValidationError(
                "payload must be an object",
                [{"path": [], "message": f"expected an object, got {_json_kind(obj)}"}],
            )
        try:
            value: T = self._validate(obj)
        except self._error as exc:
            issues = [
                {"path": list(err["loc"]), "message": err["msg"]}
                for err in exc.errors(include_url=False, include_input=False)
            ]
            first = issues[0] if issues else {"path": [], "message": "invalid"}
            where = ".".join(str(p) for p in first["path"])
            raise ValidationError(
                f"invalid payload: {first['message']}" + (f" at {where}" if where else ""),
                issues,
            ) from None
        return value

    def dump(self, value: Any) -> orjson.Fragment:
        return orjson.Fragment(self.dump_json(value))

    def dump_json(self, value: Any) -> bytes:
        if not isinstance(value, self.target):
            value = self.load(value if type(value) is dict else _as_dict(value, self.target))
        json: bytes = self._serializer.to_json(value)
        return json

    def describe(self) -> dict[str, str]:
        fields = self.target.model_fields  # type: ignore[attr-defined]
        return {name: _type_name(f.annotation) for name, f in fields.items()}


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


def _is_pydantic_model(cls: type) -> bool:
    try:
        from pydantic import BaseModel
    except ImportError:
        return False
    return issubclass(cls, BaseModel)


def _struct_name(owner: str) -> str:
    cleaned = re.sub(r"\W", "_", owner.title().replace("_", ""))
    return cleaned if cleaned.isidentifier() else f"Payload_{cleaned}"


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
