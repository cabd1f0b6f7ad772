"""Reading a topic's history from the server (``Hub.history``), in one process over real
sockets: what a chat shows when a room is opened. The events published by handlers, by the
router and by the Hub, oldest first, with the positions clients see; the last ``limit``; none
older than the ttl; a topic that keeps none says so."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

import crosswire
from crosswire import App, EventContext, History, HistoryEntry, Position, Router, message
from crosswire.testing import TestClient
from tests.support import TIMEOUT, recv

DELIVERY = Path(__file__).resolve().parents[2] / "docs" / "delivery.md"

Say = message("SAY", {"room": str, "text": str})
Said = message("SAID", {"text": str})


def chat_router() -> Router:
    """``room:{id}`` keeps its last 5 messages; ``brief:{id}`` keeps them 1 s; ``plain``
    keeps none. SAY publishes SAID to its room, with a timestamp in its meta."""
    router = Router()
    router.topic("room:{id}", history=History(size=5, ttl=None))
    router.topic("brief:{id}", history=History(size=100, ttl=1.0))
    router.topic("plain")

    def say(ctx: EventContext[Any]) -> None:
        meta = {"timestamp": 1700000000000}
        ctx.publish(ctx.payload.room, Said, {"text": ctx.payload.text}, meta=meta)

    router.on(Say, say)
    return router


@dataclass
class Chat:
    app: App
    router: Router
    ws: ClientConnection

    async def history(self, topic: str, limit: int | None = None) -> list[HistoryEntry]:
        return await asyncio.wait_for(self.app.hub.history(topic, limit), TIMEOUT)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def receive(self) -> Any:
        return orjson.loads(await recv(self.ws))


@pytest.fixture
async def chat(serve_router: Any) -> AsyncIterator[Chat]:
    router = chat_router()
    app = App(router)
    running = await serve_router(app)
    ws = await asyncio.wait_for(connect(running.url), TIMEOUT)
    yield Chat(app, router, ws)
    await ws.close()


async def join(chat: Chat, topic: str) -> str:
    """Join ``topic`` asking for positions; returns its epoch."""
    await chat.send({"type": "$ws:join", "payload": {"topic": topic, "recover": {}}})
    ack = await chat.receive()
    assert ack["type"] == "$ws:join-ack", ack
    epoch: str = ack["payload"]["epoch"]
    return epoch


async def test_the_history_holds_what_handlers_the_router_and_the_hub_published(
    chat: Chat,
) -> None:
    epoch = await join(chat, "room:1")
    await chat.send({"type": "SAY", "payload": {"room": "room:1", "text": "hello"}})
    seen = await chat.receive()  # the handler published it
    chat.router.publish("room:1", Said, {"text": "from the router"})
    chat.app.hub.to_room("room:1", "notice", {"n": 3})
    chat.app.hub.to_room("room:1", "ping")  # no data
    assert await chat.history("room:1") == [
        HistoryEntry("SAID", {"text": "hello"}, {"timestamp": 1700000000000}, Position(1, epoch)),
        HistoryEntry("SAID", {"text": "from the router"}, None, Position(2, epoch)),
        HistoryEntry("notice", {"n": 3}, None, Position(3, epoch)),
        HistoryEntry("ping", None, None, Position(4, epoch)),
    ]
    assert seen["meta"] == {
        "timestamp": 1700000000000,
        "topic": "room:1",
        "offset": 1,
        "epoch": epoch,
    }


async def test_limit_gives_the_last_ones_and_the_size_bounds_them(chat: Chat) -> None:
    for n in range(1, 9):  # 8 published, 5 kept
        chat.router.publish("room:2", Said, {"text": str(n)})
    entries = await chat.history("room:2")
    assert [e.data["text"] for e in entries] == ["4", "5", "6", "7", "8"]
    assert [e.position.offset for e in entries] == [4, 5, 6, 7, 8]
    assert [e.data["text"] for e in await chat.history("room:2", limit=2)] == ["7", "8"]
    assert await chat.history("room:2", limit=0) == []
    assert len(await chat.history("room:2", limit=100)) == 5


async def test_events_sent_with_exclude_are_in_it(chat: Chat) -> None:
    await join(chat, "room:3")
    chat.router.publish("room:3", Said, {"text": "not for everyone"}, exclude=["someone"])
    chat.app.hub.to_room("room:3", "aside", {"n": 1}, exclude=["someone"])
    assert [e.event for e in await chat.history("room:3")] == ["SAID", "aside"]


async def test_a_topic_never_published_to_has_an_empty_history(chat: Chat) -> None:
    assert await chat.history("room:never") == []


async def test_events_older_than_the_ttl_are_not_in_it(chat: Chat) -> None:
    chat.router.publish("brief:1", Said, {"text": "old"})
    await asyncio.sleep(0.5)
    chat.router.publish("brief:1", Said, {"text": "new"})
    assert [e.data["text"] for e in await chat.history("brief:1")] == ["old", "new"]

    async def until_changed() -> list[HistoryEntry]:
        while len(entries := await chat.history("brief:1")) == 2:  # noqa: ASYNC110 - expiry is announced by nothing
            await asyncio.sleep(0.02)
        return entries

    left = await asyncio.wait_for(until_changed(), TIMEOUT)
    assert [e.data["text"] for e in left] == ["new"]


async def test_a_topic_without_history_is_refused_clearly(chat: Chat) -> None:
    with pytest.raises(ValueError, match=r"topic 'plain' keeps no history.*history=History"):
        await chat.history("plain")
    with pytest.raises(ValueError, match="limit"):
        await chat.history("room:1", limit=-1)


async def test_the_example_of_docs_delivery_shows_the_last_messages_on_join() -> None:
    text = DELIVERY.read_text()
    found = re.search(r"## Reading a topic's history.*?```python\n(.*?)```", text, re.DOTALL)
    assert found, "no example under 'Reading a topic's history' in docs/delivery.md"
    example: dict[str, Any] = {"crosswire": crosswire}
    exec(found.group(1), example)
    app, router, said = example["app"], example["router"], example["Said"]
    async with TestClient(app, timeout=TIMEOUT).connect() as ann:
        assert (await ann.join("room:1")).data == {"last": []}
        for n in range(1, 4):
            router.publish("room:1", said, {"user": "ann", "text": f"m{n}"})
    async with TestClient(app, timeout=TIMEOUT).connect() as bob:
        ack = await bob.join("room:1")
    assert [m["text"] for m in ack.data["last"]] == ["m1", "m2", "m3"]
