"""Presence on Redis under faults (issue 16, point 4), with real redis-server processes: an
instance killed with SIGKILL (a real process) disappears within ``ttl``, and its entries are
removed and announced once; one frozen past ``ttl`` comes back; Redis killed and restarted
empty gets every live instance's entries back; writes that fail are done once Redis answers.

The stores here beat every 0.2 s with a ttl of 0.6 s (0.3 s per call to Redis).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest

from crosswire import BusError, ConfigurationError
from crosswire.pubsub.presence import PresenceChange, PresenceEntry
from crosswire.pubsub.redis_presence import RedisPresence
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, eventually, reap

T = TypeVar("T")

HEARTBEAT, TTL, CALL = 0.2, 0.6, 0.3

#: An instance in its own process: argv is the Redis URL, the instance, then topic and client
#: id pairs to add; says "ready" once they are in, then beats until killed.
INSTANCE = """
import asyncio, sys
from crosswire.pubsub.presence import PresenceEntry
from crosswire.pubsub.redis_presence import RedisPresence

async def main(url, instance, *pairs):
    store = RedisPresence(url, instance=instance, heartbeat=0.2, ttl=0.6, timeout=0.3)
    await store.start()
    for topic, client_id in zip(pairs[::2], pairs[1::2]):
        await store.add(topic, PresenceEntry(client_id, "u-" + client_id, {"pid": 1}, instance))
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def within(call: Awaitable[T], timeout: float = TIMEOUT) -> T:  # noqa: ASYNC109
    return await asyncio.wait_for(call, timeout)


class Instance:
    """A store of this process, with what it reported."""

    def __init__(self, url: str, name: str, *, ttl: float = TTL) -> None:
        self.store = RedisPresence(url, instance=name, heartbeat=HEARTBEAT, ttl=ttl, timeout=CALL)
        self.changes: list[PresenceChange] = []
        self.errors: list[BusError] = []
        self.store.bind(self.changes.append, self.errors.append)

    def entry(self, client_id: str) -> PresenceEntry:
        return PresenceEntry(client_id, f"u-{client_id}", None, self.store.instance)

    def changed(self, kind: str) -> list[tuple[str, str]]:
        return [(c.topic, c.entry.client_id) for c in self.changes if c.kind == kind]


@pytest.fixture
async def instances(redis_server: RedisServer) -> AsyncIterator[list[Instance]]:
    """Where tests put their in-process instances; closed at teardown."""
    made: list[Instance] = []
    yield made
    for instance in made:
        await within(instance.store.aclose())


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)  # one a test froze must die too
    await within(reap(procs))


async def started(instances: list[Instance], url: str, name: str, *, ttl: float = TTL) -> Instance:
    instance = Instance(url, name, ttl=ttl)
    instances.append(instance)
    await within(instance.store.start())
    return instance


async def spawn(
    processes: list[asyncio.subprocess.Process], url: str, name: str, *pairs: str
) -> asyncio.subprocess.Process:
    """An instance in a process of its own, once its entries are in."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", INSTANCE, url, name, *pairs, stdout=asyncio.subprocess.PIPE
    )
    processes.append(proc)
    assert proc.stdout is not None
    assert await within(proc.stdout.readline()) == b"ready\n"
    return proc


async def members(instance: Instance, topic: str) -> list[str]:
    return [entry.client_id for entry in await within(instance.store.members(topic))]


async def members_become(instance: Instance, topic: str, expected: list[str]) -> None:
    """Wait until ``topic``'s members are ``expected`` (reads that fail, Redis being away,
    count as not yet)."""

    async def poll() -> None:
        while True:
            try:
                if await members(instance, topic) == expected:
                    return
            except BusError:
                pass  # Redis is restarting: read again
            await asyncio.sleep(0.02)

    await within(poll())


async def test_instances_see_each_other_members(
    redis_server: RedisServer, instances: list[Instance]
) -> None:
    a = await started(instances, redis_server.url, "a")
    b = await started(instances, redis_server.url, "b")
    await within(a.store.add("room", a.entry("a1")))
    await within(b.store.add("room", b.entry("b1")))
    await within(b.store.add("lobby", b.entry("b1")))
    assert await within(a.store.members("room")) == [a.entry("a1"), b.entry("b1")]
    assert await members(a, "lobby") == ["b1"]
    assert a.changes == b.changes == []  # what add returns is not reported again
    assert a.errors == b.errors == []


async def test_an_instance_killed_with_sigkill_disappears_within_ttl_and_its_leaves_come_once(
    redis_server: RedisServer,
    instances: list[Instance],
    processes: list[asyncio.subprocess.Process],
) -> None:
    b = await started(instances, redis_server.url, "b")
    c = await started(instances, redis_server.url, "c")
    await within(b.store.add("room", b.entry("b1")))
    doomed = await spawn(processes, redis_server.url, "doomed", "room", "d1", "other", "d1")
    assert await members(b, "room") == ["b1", "d1"]
    assert await members(c, "other") == ["d1"]

    doomed.kill()  # SIGKILL: no clean shutdown
    killed = time.monotonic()
    await within(doomed.wait())
    await members_become(b, "room", ["b1"])
    assert time.monotonic() - killed < TTL + 0.3  # within ttl of its last heartbeat

    # "other" is read by nobody: a heartbeat's sweep removes it, and one instance says so.
    async def both_leaves() -> None:
        while len(b.changed("leave") + c.changed("leave")) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await within(both_leaves())
    await asyncio.sleep(3 * HEARTBEAT)  # more sweeps: none announces them again
    assert sorted(b.changed("leave") + c.changed("leave")) == [("other", "d1"), ("room", "d1")]
    assert b.changed("join") == c.changed("join") == []
    assert await members(c, "other") == []
    raw = redis_server.client()
    try:
        assert not await within(raw.exists("ws:instance-topics:doomed", "ws:instance:doomed"))
        assert await within(raw.smembers("ws:instances")) == {b"b", b"c"}
    finally:
        await raw.aclose()


async def test_an_instance_restarted_under_its_name_clears_what_its_previous_run_left(
    redis_server: RedisServer,
    instances: list[Instance],
    processes: list[asyncio.subprocess.Process],
) -> None:
    crashed = await spawn(processes, redis_server.url, "worker-1", "room", "old")
    crashed.kill()
    await within(crashed.wait())
    # Restarted at once, before its key expired: its start clears the previous run's entries.
    again = await started(instances, redis_server.url, "worker-1")
    assert again.changed("leave") == [("room", "old")]
    await within(again.store.add("room", again.entry("new")))
    assert await members(again, "room") == ["new"]


async def test_an_instance_frozen_past_ttl_is_taken_for_dead_then_writes_its_entries_again(
    redis_server: RedisServer,
    instances: list[Instance],
    processes: list[asyncio.subprocess.Process],
) -> None:
    b = await started(instances, redis_server.url, "b")
    frozen = await spawn(processes, redis_server.url, "frozen", "room", "f1")
    frozen.send_signal(signal.SIGSTOP)
    await members_become(b, "room", [])  # no heartbeat for ttl: dead
    assert b.changed("leave") == [("room", "f1")]
    frozen.send_signal(signal.SIGCONT)
    await members_become(b, "room", ["f1"])  # its next heartbeat found its key gone


async def test_after_redis_restarts_empty_live_instances_write_their_entries_again(
    redis_server: RedisServer, instances: list[Instance]
) -> None:
    a = await started(instances, redis_server.url, "a")
    b = await started(instances, redis_server.url, "b")
    await within(a.store.add("room", a.entry("a1")))
    await within(b.store.add("room", b.entry("b1")))
    await within(b.store.add("lobby", b.entry("b1")))

    await redis_server.kill()
    await redis_server.start()  # same port, nothing kept
    await members_become(a, "room", ["a1", "b1"])
    await members_become(a, "lobby", ["b1"])
    # Each instance wrote back its own, and announces them (they may have been seen leaving).
    assert a.changed("join") == [("room", "a1")]
    assert sorted(b.changed("join")) == [("lobby", "b1"), ("room", "b1")]
    assert a.changed("leave") == b.changed("leave") == []


async def test_an_add_while_redis_is_away_raises_and_is_written_once_redis_is_back(
    redis_server: RedisServer, instances: list[Instance]
) -> None:
    a = await started(instances, redis_server.url, "a")
    await redis_server.kill()
    with pytest.raises(BusError, match="could not add connection 'a1' to topic 'room'"):
        await within(a.store.add("room", a.entry("a1")))
    with pytest.raises(BusError, match="could not read the members of topic 'room'"):
        await within(a.store.members("room"))
    await eventually(lambda: bool(a.errors))  # the heartbeat's: one report for the outage
    assert "refresh this instance's heartbeat" in str(a.errors[0])

    await redis_server.start()
    await members_become(a, "room", ["a1"])
    assert a.changed("join") == [("room", "a1")]
    assert len(a.errors) == 1


async def test_a_remove_redis_did_not_answer_in_time_is_done_once_it_answers(
    redis_server: RedisServer, instances: list[Instance]
) -> None:
    # A ttl that outlasts the freeze: only the remove is in question here.
    a = await started(instances, redis_server.url, "a", ttl=3.0)
    b = await started(instances, redis_server.url, "b", ttl=3.0)
    await within(a.store.add("room", a.entry("a1")))
    await within(a.store.add("room", a.entry("a2")))
    redis_server.pause()
    try:
        began = time.monotonic()
        with pytest.raises(
            BusError, match=r"could not remove connection 'a1'.*no answer in 0\.3 s"
        ):
            await within(a.store.remove("room", "a1"))
        assert time.monotonic() - began < CALL + 0.5  # bounded by the store's timeout
    finally:
        redis_server.resume()
    await members_become(b, "room", ["a2"])
    assert a.changed("leave") == [("room", "a1")]


async def test_an_unreadable_entry_is_skipped_and_reported(
    redis_server: RedisServer, instances: list[Instance]
) -> None:
    a = await started(instances, redis_server.url, "a")
    await within(a.store.add("room", a.entry("a1")))
    raw = redis_server.client()
    try:
        await within(raw.hset("ws:presence:room", "junk", "not json"))
    finally:
        await raw.aclose()
    assert await members(a, "room") == ["a1"]
    assert len(a.errors) == 1
    assert "unreadable entry" in str(a.errors[0])


async def test_aclose_while_redis_is_away_is_bounded_and_says_the_entries_expire(
    redis_server: RedisServer,
) -> None:
    a = Instance(redis_server.url, "a")
    await within(a.store.start())
    await within(a.store.add("room", a.entry("a1")))
    await redis_server.kill()
    began = time.monotonic()
    await within(a.store.aclose())
    assert time.monotonic() - began < 4 * CALL
    assert any("its 1 entries expire within 0.6 s" in str(error) for error in a.errors)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"instance": ""}, "must name the instance"),
        ({"instance": "a", "heartbeat": 0}, "seconds > 0"),
        ({"instance": "a", "heartbeat": 5, "ttl": 6}, r"longer than heartbeat \+ timeout"),
    ],
)
def test_settings_that_cannot_work_are_refused(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        RedisPresence("redis://127.0.0.1:1/0", **options)


async def test_an_add_redis_did_not_answer_in_time_is_announced_once_when_it_answers(
    redis_server: RedisServer, instances: list[Instance]
) -> None:
    a = await started(instances, redis_server.url, "a", ttl=3.0)
    redis_server.pause()
    try:
        with pytest.raises(BusError, match="could not add connection 'a1'"):
            await within(a.store.add("room", a.entry("a1")))
    finally:
        redis_server.resume()  # Redis runs the add it had received: it was done after all
    await members_become(a, "room", ["a1"])
    await eventually(lambda: bool(a.changes))
    await asyncio.sleep(3 * HEARTBEAT)  # more heartbeats: none announces it again
    assert a.changed("join") == [("room", "a1")]
    assert await within(a.store.remove("room", "a1")) == PresenceChange(
        "leave", "room", a.entry("a1")
    )
