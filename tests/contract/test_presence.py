"""The Presence contract (``crosswire.pubsub.presence``), run against every store.

Each test makes stores for several instances on one shared state (one MemoryRoster, one
real redis-server, or a real Redis Cluster) and checks what the Hub relies on: add/remove say
what changed, members lists every instance's entries sorted by client id, data round-trips as
JSON, removing what is not there does nothing, and a clean shutdown removes its own entries
only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from crosswire import BusError
from crosswire.pubsub.presence import (
    MemoryPresence,
    MemoryRoster,
    Presence,
    PresenceChange,
    PresenceEntry,
)
from crosswire.pubsub.redis_presence import RedisPresence
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.support import TIMEOUT

T = TypeVar("T")

MakeStore = Callable[[str], Presence]


async def within(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, TIMEOUT)


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """``make(instance)`` is a started store of ``instance`` on the state shared by the test:
    in memory, on a real redis-server of its own, or on a Redis Cluster of its own (three
    masters, no replicas)."""
    made: list[Presence] = []
    server: RedisServer | RedisCluster | None = None
    if request.param == "memory":
        roster = MemoryRoster()

        def factory(instance: str) -> Presence:
            return MemoryPresence(roster, instance=instance)
    else:
        cluster = request.param == "cluster"
        server = RedisCluster(tmp_path, replicas=False) if cluster else RedisServer(tmp_path)
        await server.start()
        url = server.url

        def factory(instance: str) -> Presence:
            return RedisPresence(
                url, instance=instance, heartbeat=0.2, ttl=1.0, timeout=0.5, cluster=cluster
            )

    def make_store(instance: str) -> Presence:
        store = factory(instance)
        made.append(store)
        return store

    yield make_store
    for store in made:
        await within(store.aclose())
    if isinstance(server, RedisCluster):
        await server.aclose()
    elif server is not None:
        await server.kill()


def entry(store: Presence, client_id: str, data: object = None) -> PresenceEntry:
    return PresenceEntry(client_id, f"user-{client_id}", data, store.instance)


async def test_every_store_is_a_presence(make: MakeStore) -> None:
    assert isinstance(make("a"), Presence)


async def test_add_is_a_join_members_list_it_and_remove_is_a_leave(make: MakeStore) -> None:
    a = make("a")
    await within(a.start())
    ann = entry(a, "c1", {"status": "online"})
    assert await within(a.add("room", ann)) == PresenceChange("join", "room", ann)
    assert await within(a.members("room")) == [ann]
    assert await within(a.remove("room", "c1")) == PresenceChange("leave", "room", ann)
    assert await within(a.members("room")) == []


async def test_members_lists_every_instance_entries_sorted_by_client_id(make: MakeStore) -> None:
    a, b = make("a"), make("b")
    await within(a.start())
    await within(b.start())
    for store, client_id in [(a, "c3"), (b, "c1"), (a, "c2"), (b, "c4")]:
        await within(store.add("room", entry(store, client_id)))
    expected = [
        PresenceEntry("c1", "user-c1", None, "b"),
        PresenceEntry("c2", "user-c2", None, "a"),
        PresenceEntry("c3", "user-c3", None, "a"),
        PresenceEntry("c4", "user-c4", None, "b"),
    ]
    assert await within(a.members("room")) == expected
    assert await within(b.members("room")) == expected
    assert await within(a.members("another room")) == []


async def test_a_connection_in_several_topics_is_in_each_until_it_leaves_that_one(
    make: MakeStore,
) -> None:
    a = make("a")
    await within(a.start())
    for topic in ("one", "two", "three"):
        await within(a.add(topic, entry(a, "c1", {"in": topic})))
    await within(a.remove("two", "c1"))
    assert [e.data for e in await within(a.members("one"))] == [{"in": "one"}]
    assert await within(a.members("two")) == []
    assert [e.data for e in await within(a.members("three"))] == [{"in": "three"}]


async def test_data_round_trips_as_json(make: MakeStore) -> None:
    a = make("a")
    await within(a.start())
    data = {"name": "Zoë ✓", "n": 3, "x": 1.5, "ok": True, "none": None, "tags": ["a", "b"]}
    await within(a.add("room", entry(a, "c1", data)))
    await within(a.add("room", PresenceEntry("c2", None, ("a", 1), a.instance)))
    await within(a.add("room", PresenceEntry("c3", "u", "just text", a.instance)))
    assert await within(a.members("room")) == [
        PresenceEntry("c1", "user-c1", data, "a"),
        PresenceEntry("c2", None, ["a", 1], "a"),  # as JSON has it: a tuple is a list
        PresenceEntry("c3", "u", "just text", "a"),
    ]


async def test_adding_a_connection_again_replaces_its_entry_without_a_join(
    make: MakeStore,
) -> None:
    a = make("a")
    await within(a.start())
    await within(a.add("room", entry(a, "c1", {"v": 1})))
    assert await within(a.add("room", entry(a, "c1", {"v": 2}))) is None
    assert await within(a.members("room")) == [entry(a, "c1", {"v": 2})]


async def test_removing_what_is_not_there_does_nothing(make: MakeStore) -> None:
    a, b = make("a"), make("b")
    await within(a.start())
    await within(b.start())
    await within(a.add("room", entry(a, "c1")))
    assert await within(a.remove("room", "nobody")) is None
    assert await within(a.remove("no such topic", "c1")) is None
    assert await within(b.remove("room", "c1")) is None  # another instance's connection
    assert await within(a.remove("room", "c1")) is not None
    assert await within(a.remove("room", "c1")) is None  # twice
    assert await within(b.members("room")) == []


async def test_aclose_removes_this_instance_entries_and_not_another_one(
    make: MakeStore,
) -> None:
    a, b = make("a"), make("b")
    await within(a.start())
    await within(b.start())
    for topic in ("one", "two"):
        await within(a.add(topic, entry(a, f"a-{topic}")))
        await within(b.add(topic, entry(b, f"b-{topic}")))
    await within(a.aclose())
    assert await within(b.members("one")) == [entry(b, "b-one")]
    assert await within(b.members("two")) == [entry(b, "b-two")]
    await within(a.aclose())  # idempotent


async def test_writes_after_aclose_raise_until_start_opens_the_store_again(
    make: MakeStore,
) -> None:
    a = make("a")
    await within(a.start())
    await within(a.aclose())
    with pytest.raises(BusError, match="closed"):
        await within(a.add("room", entry(a, "c1")))
    with pytest.raises(BusError, match="closed"):
        await within(a.remove("room", "c1"))
    await within(a.start())
    await within(a.add("room", entry(a, "c1")))
    assert await within(a.members("room")) == [entry(a, "c1")]


async def test_add_starts_a_store_that_was_not_started(make: MakeStore) -> None:
    a, b = make("a"), make("b")
    await within(a.add("room", entry(a, "c1")))
    assert await within(b.members("room")) == [entry(a, "c1")]


async def test_an_entry_of_another_instance_or_with_data_that_is_not_json_is_refused(
    make: MakeStore,
) -> None:
    a = make("a")
    await within(a.start())
    with pytest.raises(ValueError, match="instance 'b'"):
        await within(a.add("room", PresenceEntry("c1", None, None, "b")))
    with pytest.raises(TypeError, match="'c2' is not JSON"):
        await within(a.add("room", entry(a, "c2", {"bad": object()})))
    assert await within(a.members("room")) == []


async def test_writes_of_one_instance_take_effect_in_the_order_they_were_called(
    make: MakeStore,
) -> None:
    a = make("a")
    await within(a.start())
    calls = []
    for version in range(1, 6):  # add, remove, add, ...: all started before any is done
        calls.append(asyncio.create_task(a.add("room", entry(a, "c1", {"v": version}))))
        if version < 5:
            calls.append(asyncio.create_task(a.remove("room", "c1")))
    changes = await within(asyncio.gather(*calls))
    assert [change.kind if change else None for change in changes] == ["join", "leave"] * 4 + [
        "join"
    ]
    assert await within(a.members("room")) == [entry(a, "c1", {"v": 5})]
