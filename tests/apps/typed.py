"""An App whose schemas cover what ``crosswire types`` converts, for its tests: run as
``crosswire types tests.apps.typed:app``. Two endpoints, each a Router: ``/game`` with a
``{"field": type}`` mapping, a msgspec Struct (a nested Struct, a list, an optional, a literal,
an enum, a dict and a tuple), a message without payload and RPCs; ``/profile`` with pydantic
models (an alias, a nested model, a union) and topics with and without join data."""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec
import pydantic

from crosswire import App, Endpoint, Router, message, rpc


class Pos(msgspec.Struct):
    """A position on the board."""

    x: int
    y: float


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Move(msgspec.Struct):
    name: str
    pos: Pos
    path: list[Pos]
    mode: Literal["walk", "run"]
    color: Color
    note: str | None = None
    scores: dict[str, int] = {}
    pair: tuple[int, str] = (0, "")


class Address(pydantic.BaseModel):
    city: str
    zip: str | None = None


class Profile(pydantic.BaseModel):
    user_name: str = pydantic.Field(alias="userName")
    age: int | None = None
    address: Address
    tags: list[str] = []
    id: int | str


class Saved(pydantic.BaseModel):
    ok: bool
    version: int


def ignore(ctx: Any) -> None:
    """(The handlers do nothing: the tests only read the schemas.)"""


Chat = message("chat", {"text": str, "room": str | None})
MoveMsg = message("MOVE", Move)
Ping = message("PING")
Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})
Locate = rpc("LOCATE", {"name": str}, "LOCATED", Pos)
Save = rpc("SAVE", Profile, "SAVED", Saved)

game = Router()
game.on(Chat, ignore).on(MoveMsg, ignore).on(Ping, ignore)
game.rpc(Add, ignore).rpc(Locate, ignore)

profile = Router()
profile.rpc(Save, ignore)
profile.topic("room:{id}", data={"name": str, "seat": int | None})
profile.topic("lobby")
profile.topic("team:{team}", data=Address)

app = App(endpoints=[Endpoint("/game", game), Endpoint("/profile", profile)])
