"""The Python client recovers on its own, against real crosswire servers: a topic joined with
``recover=True`` is joined again after a reconnect from the last position seen; the events
published while the client was away reach its handlers, in order and once each, then the live
ones; when the server cannot recover them (the history is too small, or the server restarted:
another epoch) the ``on_resync`` listeners are told, before the live events."""

from __future__ import annotations

from typing import Any

import orjson

import crosswire
from crosswire import Accept, History, JoinContext, Response, Router, message
from crosswire.client import Client, ClientState, Frame, Position, Reconnect, Resync
from tests.support import ServeRouter, eventually

News = message("NEWS", {"n": int})
Drop = message("DROP")

FAST = Reconnect(initial_delay=0.02, max_delay=0.1)


class Newsroom:
    """A router whose ``news:{id}`` topics keep their last 5 events. ``DROP`` closes the
    sender's connection (1012: come back later); while ``away`` the handshake is refused
    with 503, so that the client stays away until the test lets it back. A join's ack
    carries the last ``n`` published (a snapshot, for a resync)."""

    def __init__(self) -> None:
        self.away = False
        self.latest = 0
        self.router = Router()

        def join(ctx: JoinContext) -> None:
            ctx.accept({"latest": self.latest})

        def upgrade(request: crosswire.Request) -> Accept | Response:
            return Response(503, "away") if self.away else Accept()

        self.router.topic("news:{id}", history=History(size=5, ttl=None)).on_join(join)
        self.router.topic("plain")
        self.router.on(Drop, lambda ctx: ctx.close(1012, "come back later"))
        self.router.on_upgrade(upgrade)

    def publish(self, topic: str, *numbers: int) -> None:
        for n in numbers:
            self.latest = n
            self.router.publish(topic, News, {"n": n})


class Timeline:
    """What the application saw, in order: ``("news", n, offset)`` per event handed to the
    handler, ``("resync", topic, data)`` per resync."""

    def __init__(self, client: Client) -> None:
        self.seen: list[tuple[Any, ...]] = []
        client.on(News, self._news)
        client.on_resync(lambda resync: self.seen.append(("resync", resync.topic, resync.data)))

    def _news(self, frame: Frame) -> None:
        self.seen.append(("news", frame.payload.n, frame.meta.get("offset")))

    @property
    def numbers(self) -> list[int]:
        return [entry[1] for entry in self.seen if entry[0] == "news"]

    async def until(self, n: int) -> None:
        await eventually(lambda: n in self.numbers)


async def go_away(client: Client, newsroom: Newsroom) -> None:
    """Drop the client's connection (the server closes it) and keep it away."""
    newsroom.away = True
    await client.send(Drop)
    await eventually(lambda: client.state is ClientState.RECONNECTING)


async def test_events_missed_while_away_arrive_in_order_once_each_then_live_ones(
    serve_router: ServeRouter,
) -> None:
    newsroom = Newsroom()
    server = await serve_router(newsroom.router)
    async with Client(server.url + "/", reconnect=FAST) as client:
        timeline = Timeline(client)
        assert await client.join("news:1", recover=True) == {"latest": 0}
        await client.join("plain")
        position = client.position("news:1")
        assert position is not None and position.offset == 0
        epoch = position.epoch
        assert client.position("plain") is None  # not joined with recover
        newsroom.publish("news:1", 1, 2)
        await timeline.until(2)
        assert client.position("news:1") == Position(2, epoch)

        await go_away(client, newsroom)
        newsroom.publish("news:1", 3, 4, 5)  # missed: all within the history's 5
        newsroom.away = False
        await timeline.until(5)
        newsroom.publish("news:1", 6)  # live
        await timeline.until(6)
        assert timeline.seen == [("news", n, n) for n in range(1, 7)]  # no resync, none twice
        assert client.position("news:1") == Position(6, epoch)
        await client.leave("news:1")
        assert client.position("news:1") is None


async def test_a_gap_longer_than_the_history_is_a_resync_before_the_live_events(
    serve_router: ServeRouter,
) -> None:
    newsroom = Newsroom()
    server = await serve_router(newsroom.router)
    async with Client(server.url + "/", reconnect=FAST) as client:
        timeline = Timeline(client)
        await client.join("news:2", recover=True)
        newsroom.publish("news:2", 1)
        await timeline.until(1)
        epoch = client.position("news:2").epoch  # type: ignore[union-attr]

        await go_away(client, newsroom)
        newsroom.publish("news:2", *range(2, 10))  # 8 missed, 5 kept: not recoverable
        newsroom.away = False
        await eventually(lambda: len(timeline.seen) == 2)
        assert timeline.seen[1] == ("resync", "news:2", {"latest": 9})  # the ack's snapshot
        assert client.position("news:2") == Position(9, epoch)  # from the present on
        newsroom.publish("news:2", 10)
        await timeline.until(10)
        assert timeline.seen == [
            ("news", 1, 1),
            ("resync", "news:2", {"latest": 9}),
            ("news", 10, 10),
        ]
        assert client.topics == {"news:2": None}  # still joined


async def test_a_server_restart_is_another_epoch_and_a_resync(
    serve_router: ServeRouter,
) -> None:
    first = Newsroom()
    server = await serve_router(first.router)
    client = Client(server.url + "/", reconnect=FAST)
    timeline = Timeline(client)
    await client.connect()
    try:
        await client.join("news:3", recover=True)
        first.publish("news:3", 1, 2, 3)
        await timeline.until(3)
        old = client.position("news:3")
        await server.aclose()  # the history was this process's memory
        await eventually(lambda: not client.is_connected)

        again = Newsroom()
        await serve_router(again.router, port=server.port)
        await eventually(lambda: len(timeline.seen) == 4)
        assert timeline.seen[3] == ("resync", "news:3", {"latest": 0})
        new = client.position("news:3")
        assert old is not None and new is not None
        assert new.offset == 0 and new.epoch != old.epoch
        again.publish("news:3", 1)  # offset 1 again, in the new epoch: not taken for a repeat
        await timeline.until(1)
        assert timeline.seen[4:] == [("news", 1, 1)]
    finally:
        await client.close()


def repeating_app() -> crosswire.App:
    """Plain hooks that answer any join of ``t`` as a positioned one, at (1, "e"), then send
    events of ``t`` at 1, 2, 2, 1 and 3 in epoch ``e``, and 1 in epoch ``f``: a client hands
    over 2, 3, then (the history's past was lost: a resync) 1 of ``f``."""

    def on_message(peer: crosswire.Peer, msg: crosswire.Message) -> None:
        join = orjson.loads(msg.text())
        payload = {"topic": "t", "recovered": False, "offset": 1, "epoch": "e"}
        peer.send({"type": "$ws:join-ack", "meta": join["meta"], "payload": payload})
        for offset, epoch in [(1, "e"), (2, "e"), (2, "e"), (1, "e"), (3, "e"), (1, "f")]:
            meta = {"topic": "t", "offset": offset, "epoch": epoch}
            peer.send({"type": "NEWS", "meta": meta, "payload": {"n": offset}})

    return crosswire.App(crosswire.define_hooks(message=on_message))


async def test_an_event_sent_twice_is_handed_to_the_application_once(
    serve_router: ServeRouter,
) -> None:
    """The client drops an event at or before the last position seen in the same epoch; an
    event of another epoch while connected is a resync (the history's past was lost)."""
    server = await serve_router(repeating_app())
    async with Client(server.url + "/", reconnect=FAST) as client:
        timeline = Timeline(client)
        await client.join("t", recover=True)
        await eventually(lambda: len(timeline.seen) >= 4)  # (the repeats come before the last)
        assert timeline.seen == [
            ("news", 2, 2),
            ("news", 3, 3),
            ("resync", "t", None),
            ("news", 1, 1),
        ]
        assert client.position("t") == Position(1, "f")


async def test_resync_listeners_may_be_async_and_their_errors_are_reported(
    serve_router: ServeRouter,
) -> None:
    newsroom = Newsroom()
    server = await serve_router(newsroom.router)
    async with Client(server.url + "/", reconnect=FAST) as client:
        resyncs: list[Resync] = []
        errors: list[str] = []

        async def reload(resync: Resync) -> None:
            resyncs.append(resync)
            raise RuntimeError("reload failed")

        client.on_resync(reload)
        client.on_error(lambda error, context: errors.append(f"{context.type}: {error}"))
        await client.join("news:4", recover=True)
        await go_away(client, newsroom)
        newsroom.publish("news:4", *range(1, 7))
        newsroom.away = False
        await eventually(lambda: errors == ["handler: reload failed"])
        assert resyncs == [Resync("news:4", {"latest": 6})]
