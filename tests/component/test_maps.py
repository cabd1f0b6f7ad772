"""router.map (Rover's ws.map.{event}): outbound events transformed, or dropped, before
encoding, on direct sends and publications alike, once per publication."""

from __future__ import annotations

from typing import Any

from crosswire import EventContext, Router, message
from crosswire.testing import TestClient
from tests.support import MakeClient, settle

News = message("NEWS", {"text": str})
Post = message("POST", {"text": str})
Ping = message("PING")


def mapped_router(calls: list[Any]) -> Router:
    def stamp(payload: Any) -> Any:
        calls.append(payload)
        if payload["text"] == "secret":
            return None  # dropped
        return {**payload, "stamped": True}

    def join(ctx: EventContext[Any]) -> None:
        ctx.subscribe("news")
        ctx.send(News, {"text": "welcome"})

    def post(ctx: EventContext[Any]) -> None:
        ctx.publish("news", News, {"text": ctx.payload.text})

    return Router().on(Ping, join).on(Post, post).map(News, stamp)


async def test_a_map_stamps_or_drops_sends_and_publications(make_client: MakeClient) -> None:
    calls: list[Any] = []
    router = mapped_router(calls)
    client = make_client(router)
    async with client.connect() as ann, client.connect() as bob:
        for conn in (ann, bob):
            await conn.send(Ping)
            welcome = await conn.receive()
            assert welcome.json == {
                "type": "NEWS",
                "meta": {},
                "payload": {"text": "welcome", "stamped": True},
            }
        calls.clear()
        await ann.send(Post, {"text": "hello"})
        for conn in (ann, bob):
            assert (await conn.receive()).payload == {"text": "hello", "stamped": True}
        assert calls == [{"text": "hello"}]  # once for the publication, not per recipient
        await ann.send(Post, {"text": "secret"})
        await ann.send(Post, {"text": "after"})
        for conn in (ann, bob):  # the dropped one never arrives
            assert (await conn.receive()).payload["text"] == "after"
        await settle(ann)
        assert ann.pending == []


async def test_a_map_applies_to_what_the_hub_delivers_from_elsewhere() -> None:
    calls: list[Any] = []
    router = mapped_router(calls)
    client = TestClient(router)
    async with client.connect() as ann:
        await ann.send(Ping)
        await ann.receive()
        client.app.hub.to_room("news", "NEWS", {"text": "from the hub"})
        frame = await ann.receive()
        assert frame.payload == {"text": "from the hub", "stamped": True}
