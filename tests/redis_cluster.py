"""A real Redis Cluster per test: three masters and three replicas, ``redis-server`` processes on
free ports (each in its own directory), joined by ``redis-cli --cluster create``; fault tests
kill a master and wait for its replica to take its slots."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import redis.asyncio as aioredis
from redis.crc import key_slot

from tests.redis_server import RedisServer, free_port
from tests.support import TIMEOUT

#: Seconds the cluster may take to form, or to fail over after a master died.
FORM_TIMEOUT = 20.0
#: Milliseconds a node may be silent before the others take it for failed (the default is
#: 15 s; a failover then takes about two of these).
NODE_TIMEOUT_MS = 1000


class RedisCluster:
    """``masters`` masters with one replica each (``replicas=False``: none), on 127.0.0.1.

    ``start()`` forms it; ``url`` names one of its nodes (any node leads a client to all).
    ``master_of(channel)`` is the port of the master that owns a channel's (or key's) slot now;
    ``keys()`` lists what the masters hold; ``kill(port)`` SIGKILLs one node;
    ``failed_over(slot)`` waits until another master serves the slot and every live node says
    ``cluster_state:ok``; ``move(slot, to)`` migrates an empty slot to another master.
    """

    def __init__(self, workdir: Path, *, masters: int = 3, replicas: bool = True) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (apt-get install -y redis-server)")
        self._cli = cli
        count = masters * (2 if replicas else 1)
        self._replicas = replicas
        self.nodes: list[RedisServer] = []
        for i in range(count):
            (workdir / f"node{i}").mkdir()
            self.nodes.append(RedisServer(workdir / f"node{i}"))
        self.url = self.nodes[0].url
        self._killed: set[int] = set()

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    async def start(self) -> None:
        for node in self.nodes:
            await node.start(
                "--cluster-enabled",
                "yes",
                # Its own free port for the cluster bus (by default port + 10000, which may be
                # taken, or past 65535).
                "--cluster-port",
                str(self._bus_port()),
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                # A replica's first sync at once (not after the default 5 s wait for others).
                "--repl-diskless-sync-delay",
                "0",
                # A replica takes over however long ago it last heard from its master: on a
                # loaded machine its link may look stale, and by default it would then never
                # fail over (the wait below would only time out).
                "--cluster-replica-validity-factor",
                "0",
            )
        create = await asyncio.create_subprocess_exec(
            self._cli,
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in self.ports),
            "--cluster-replicas",
            "1" if self._replicas else "0",
            "--cluster-yes",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(create.communicate(), FORM_TIMEOUT)
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output.decode()}")
        await asyncio.wait_for(self._formed(), FORM_TIMEOUT)

    def _bus_port(self) -> int:
        while True:
            port = free_port()
            if port not in self.ports:
                return port

    async def aclose(self) -> None:
        for node in self.nodes:
            await node.kill()

    async def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``: its clients see their connections reset."""
        await self._node(port).kill()
        self._killed.add(port)

    async def move(self, slot: int, to: int) -> None:
        """Migrate ``slot`` (holding no keys) to the master on port ``to``, as ``redis-cli
        --cluster reshard`` does: IMPORTING/MIGRATING, then NODE on both masters."""
        source = (await self.slots())[slot]
        ids = {port: await self._id(port) for port in (source, to)}
        steps = [
            (to, "IMPORTING", ids[source]),
            (source, "MIGRATING", ids[to]),
            (to, "NODE", ids[to]),
            (source, "NODE", ids[to]),
        ]
        for port, state, node in steps:
            client = self._client(port)
            try:
                await client.execute_command("CLUSTER SETSLOT", slot, state, node)  # type: ignore[no-untyped-call]
            finally:
                await client.aclose()

    async def _id(self, port: int) -> str:
        client = self._client(port)
        try:
            reply = await client.execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def slots(self) -> dict[int, int]:
        """Each slot's master port, as a live node sees it (CLUSTER SLOTS)."""
        for port in self.ports:
            if port in self._killed:
                continue
            client = self._client(port)
            try:
                reply = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            except (OSError, aioredis.ConnectionError, aioredis.TimeoutError):
                continue
            finally:
                await client.aclose()
            return _slot_owners(reply)
        raise RuntimeError("no node of the cluster answers")

    async def master_of(self, name: str) -> int:
        """The port of the master that owns ``name``'s slot now."""
        return (await self.slots())[key_slot(name.encode())]

    async def keys(self) -> list[str]:
        """Every key the masters hold now."""
        found: list[str] = []
        for port in sorted(set((await self.slots()).values())):
            client = self._client(port)
            try:
                found += [key.decode() async for key in client.scan_iter()]
            finally:
                await client.aclose()
        return found

    async def failed_over(self, slot: int, dead: int) -> int:
        """Wait until a live master other than ``dead`` serves ``slot``, every live node says
        ``cluster_state:ok`` and agrees on that; the new master's port."""

        async def promoted() -> int:
            while True:
                owner = (await self.slots()).get(slot)
                if owner is not None and owner != dead and await self._all_ok(slot, owner):
                    return owner
                await asyncio.sleep(0.1)

        return await asyncio.wait_for(promoted(), FORM_TIMEOUT)

    async def _formed(self) -> None:
        while True:
            owners = await self.slots()
            if (
                len(owners) == 16384
                and await self._all_ok(0, owners[0])
                and (not self._replicas or await self._replicas_synced())
            ):
                return
            await asyncio.sleep(0.1)

    async def _replicas_synced(self) -> bool:
        """Whether every replica has its master's data (so that it can take over)."""
        for port in self.ports:
            client = self._client(port)
            try:
                info = await client.info("replication")
            finally:
                await client.aclose()
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    async def _all_ok(self, slot: int, owner: int) -> bool:
        """Whether every live node says cluster_state:ok and ``owner`` owns ``slot``."""
        for port in self.ports:
            if port in self._killed:
                continue
            client = self._client(port)
            try:
                info = await client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
                reply = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            except (OSError, aioredis.ConnectionError, aioredis.TimeoutError):
                return False
            finally:
                await client.aclose()
            if _state(info) != "ok" or _slot_owners(reply).get(slot) != owner:
                return False
        return True

    def _client(self, port: int) -> aioredis.Redis:
        """A client of one node whose every call is bounded (connecting and each reply, 5 s
        each): a check of the cluster that cannot answer fails, it does not hang the test.
        (The cluster's nodes have no password.)"""
        return aioredis.Redis(
            host="127.0.0.1", port=port, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )

    def _node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)


def _state(info: object) -> str:
    """``cluster_state`` of CLUSTER INFO (which redis-py parses into a dict)."""
    if isinstance(info, dict):
        return str(info.get("cluster_state"))
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "ok" if "cluster_state:ok" in text else "fail"


def _slot_owners(reply: object) -> dict[int, int]:
    """CLUSTER SLOTS (as redis-py returns it: a list of ranges, or a dict keyed by
    ``"start-end"``) as slot -> master port."""
    owners: dict[int, int] = {}
    if isinstance(reply, dict):
        for span, info in reply.items():
            start, end = (int(x) for x in str(span).split("-"))
            port = int(info["primary"][1])
            owners.update(dict.fromkeys(range(start, end + 1), port))
        return owners
    assert isinstance(reply, list)
    for start, end, master, *_ in reply:
        owners.update(dict.fromkeys(range(int(start), int(end) + 1), int(master[1])))
    return owners
