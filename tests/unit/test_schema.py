"""message() and rpc(): three ways to write a payload, all strict, checked when created."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from pydantic import BaseModel, Field, computed_field

from crosswire import ConfigurationError, ValidationError, message, rpc


class ChatStruct(msgspec.Struct):
    text: str
    room: str = "lobby"


class ChatModel(BaseModel):
    text: str
    room: str = "lobby"


@pytest.fixture(params=["mapping", "struct", "pydantic"])
def chat_spec(request: pytest.FixtureRequest) -> Any:
    return {
        "mapping": {"text": str, "room": str | None},
        "struct": ChatStruct,
        "pydantic": ChatModel,
    }[request.param]


def test_valid_payload_loads_typed_with_attribute_access(chat_spec: Any) -> None:
    chat = message("CHAT", chat_spec)
    value = chat.load_payload({"text": "hi", "room": "a"})
    assert (value.text, value.room) == ("hi", "a")


def test_unknown_top_level_keys_are_rejected(chat_spec: Any) -> None:
    chat = message("CHAT", chat_spec)
    with pytest.raises(ValidationError) as bad:
        chat.load_payload({"text": "hi", "extra": 1})
    assert bad.value.issues and "extra" in str(bad.value.issues[0]["path"]) + str(bad.value)


def test_wrong_types_and_missing_fields_are_rejected_with_a_path(chat_spec: Any) -> None:
    chat = message("CHAT", chat_spec)
    with pytest.raises(ValidationError) as wrong:
        chat.load_payload({"text": 5})
    assert wrong.value.issues[0]["path"] == ["payload", "text"]
    with pytest.raises(ValidationError):
        chat.load_payload({})
    with pytest.raises(ValidationError, match="invalid payload: must be an object"):
        chat.load_payload(["text"])


def test_outbound_payloads_are_validated_too(chat_spec: Any) -> None:
    chat = message("CHAT", chat_spec)
    fragment = chat.dump_payload({"text": "out", "room": "b"})
    assert isinstance(fragment, orjson.Fragment)
    assert orjson.loads(orjson.dumps(fragment)) == {"text": "out", "room": "b"}
    with pytest.raises(ValidationError):
        chat.dump_payload({"text": 1})
    with pytest.raises(ValidationError):
        chat.dump_payload({"text": "x", "nope": 1})


def test_typed_instances_are_sent_as_they_are() -> None:
    assert orjson.dumps(message("C", ChatStruct).dump_payload(ChatStruct("hi"))) == (
        b'{"text":"hi","room":"lobby"}'
    )
    assert (
        orjson.loads(orjson.dumps(message("C", ChatModel).dump_payload(ChatModel(text="x"))))[
            "text"
        ]
        == "x"
    )


def test_model_instances_are_serialized_in_one_call_unless_an_alias_matters() -> None:
    class Aliased(BaseModel):
        user_id: int = Field(alias="userId")

    class Computed(BaseModel):
        first: str

        @computed_field(alias="upperFirst")  # type: ignore[prop-decorator]
        @property
        def upper(self) -> str:
            return self.first.upper()

    plain = message("PLAIN", ChatModel).payload
    assert plain is not None and plain.dump_trusted is not None
    value = ChatModel(text="x")
    assert plain.dump_trusted(value) == plain.dump_json(value) == b'{"text":"x","room":"lobby"}'

    class Nested(BaseModel):  # no alias of its own; its field's model has one
        inner: Aliased

    class Loose(BaseModel):  # Any may hold a model with aliases
        data: Any

    cases: list[tuple[type[BaseModel], BaseModel, dict[str, Any]]] = [
        (Aliased, Aliased(userId=1), {"userId": 1}),
        (Computed, Computed(first="a"), {"first": "a", "upperFirst": "A"}),
        (Nested, Nested(inner=Aliased(userId=2)), {"inner": {"userId": 2}}),
        (Loose, Loose(data=Aliased(userId=3)), {"data": {"userId": 3}}),
    ]
    for model, instance, sent in cases:
        codec: Any = message("A", model).payload
        assert codec is not None and codec.dump_trusted is None  # by alias: the general path
        assert orjson.loads(codec.dump_json(instance)) == sent
    assert message("S", ChatStruct).payload.dump_trusted is None  # type: ignore[union-attr]


def test_msgspec_is_strict_about_types() -> None:
    counter = message("N", {"n": int})
    with pytest.raises(ValidationError):
        counter.load_payload({"n": True})
    with pytest.raises(ValidationError):
        counter.load_payload({"n": "1"})


def test_schema_without_payload() -> None:
    ping = message("PING")
    assert ping.payload is None and ping.dump_payload(None) is None
    with pytest.raises(ValidationError, match="takes no payload"):
        ping.dump_payload({"x": 1})


@pytest.mark.parametrize("kind", ["$ws:custom", "__private", "", 7])
def test_reserved_or_empty_types_are_refused(kind: Any) -> None:
    with pytest.raises(ConfigurationError):
        message(kind)


@pytest.mark.parametrize("key", ["clientId", "receivedAt", "correlationId", "timeoutMs"])
def test_reserved_meta_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigurationError, match="reserved"):
        message("T", {"a": int}, meta={key: str})


def test_rpc_is_message_with_a_response() -> None:
    add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})
    assert add.is_rpc and add.response is not None and add.response.type == "ADD_RESULT"
    same = message("ADD", {"a": int}, response=message("ADD_RESULT", {"sum": int}))
    assert same.is_rpc
    with pytest.raises(ConfigurationError, match="reserved prefix"):
        rpc("GET", None, "$ws:res", None)
    with pytest.raises(ConfigurationError, match="response must be a schema"):
        message("X", None, response={"sum": int})  # type: ignore[call-overload]
    assert "ADD_RESULT" in repr(add)


def test_bad_payload_specs_are_refused_at_creation() -> None:
    with pytest.raises(ConfigurationError, match="mapping"):
        message("X", 42)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="not an identifier"):
        message("X", {"not valid": int})


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"a": {"b": int}}, "field 'a' is a mapping, not a type"),
        ({"a": 5}, "not supported"),
    ],
)
def test_field_types_msgspec_cannot_use_are_a_configuration_error(
    fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        message("X", fields)
