"""EagerTransport: sends that finish at once cost no task; a send that suspends is finished by
one task, and the sends behind it follow in order. Driven with real asyncio futures."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from crosswire.adapters._eager import EagerTransport
from crosswire.eager import step
from tests.support import TIMEOUT


class Wire:
    """A server's send side: each send completes at once unless ``block`` is set, in which
    case it waits (as a server waits for a full socket buffer to drain)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.unblocked = asyncio.Event()
        self.unblocked.set()
        self.aborted = False

    async def send_one(self, payload: str | bytes, text: bool) -> None:
        await self._maybe_wait()
        self.sent.append(("text" if text else "binary", payload))

    async def send_close(self, code: int, reason: str) -> None:
        await self._maybe_wait()
        self.sent.append(("close", code, reason))

    async def _maybe_wait(self) -> None:
        if not self.unblocked.is_set():
            await self.unblocked.wait()

    def abort(self) -> None:
        self.aborted = True


class Signals:
    """Stands in for the Peer: records pause/resume."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def _pause_writing(self) -> None:
        self.events.append("pause")

    def _resume_writing(self) -> None:
        self.events.append("resume")


class WireTransport(EagerTransport):
    """An adapter's transport, writing to a :class:`Wire`; ``in_server`` stands for the
    server's own buffer (aiohttp's), when given."""

    __slots__ = ("in_server", "wire")

    def __init__(self, wire: Wire, limit: int, in_server: list[int] | None = None) -> None:
        super().__init__(
            close_timeout=1.0, send_buffer_limit=limit, hands_over=in_server is not None
        )
        self.wire = wire
        self.in_server = in_server

    def _send_one(self, payload: str | bytes, text: bool) -> Coroutine[Any, Any, None]:
        return self.wire.send_one(payload, text)

    async def _send_close(self, code: int, reason: str) -> None:
        await self.wire.send_close(code, reason)

    def _drop(self) -> None:
        self.wire.abort()

    def _server_buffered(self) -> int:
        return self.in_server[0] if self.in_server is not None else 0


def make(wire: Wire, limit: int = 1000) -> tuple[EagerTransport, Signals]:
    transport = WireTransport(wire, limit)
    signals = Signals()
    transport.bind(signals)  # type: ignore[arg-type]
    return transport, signals


async def settle(transport: EagerTransport) -> None:
    task = transport._task
    if task is not None:
        await asyncio.wait_for(asyncio.shield(task), TIMEOUT)


async def test_sends_that_do_not_suspend_complete_at_once_without_a_task() -> None:
    wire = Wire()
    transport, _ = make(wire)
    transport.send_text("a")
    transport.send_binary(b"b")
    assert wire.sent == [("text", "a"), ("binary", b"b")]  # before any await
    assert transport._task is None and transport.buffered_amount() == 0


async def test_a_suspended_send_and_those_behind_it_finish_in_order() -> None:
    wire = Wire()
    transport, signals = make(wire, limit=500)
    wire.unblocked.clear()
    transport.send_text("x" * 100)  # suspends: the client is not reading
    for i in range(5):
        transport.send_text(f"{i}" * 100)
    assert wire.sent == [] and transport._task is not None
    assert transport.buffered_amount() == 600
    assert signals.events == ["pause"]  # past the high-water mark: min(64 KiB, limit)
    wire.unblocked.set()
    await settle(transport)
    assert [p for _, p in wire.sent] == ["x" * 100] + [f"{i}" * 100 for i in range(5)]
    assert signals.events == ["pause", "resume"]
    assert transport._task is None and transport.buffered_amount() == 0
    transport.send_text("after")  # back on the fast path
    assert wire.sent[-1] == ("text", "after")


async def test_close_waits_for_the_backlog_and_later_sends_are_dropped() -> None:
    wire = Wire()
    transport, _ = make(wire)
    wire.unblocked.clear()
    transport.send_text("one")
    transport.send_text("two")
    transport.close(4000, "bye")
    transport.send_text("too late")
    wire.unblocked.set()
    await settle(transport)
    assert wire.sent == [("text", "one"), ("text", "two"), ("close", 4000, "bye")]
    await transport.aclose()


async def test_close_runs_in_a_task_of_its_own() -> None:
    """Servers wrap closing in asyncio.timeout, which must belong to a task of ours, never to
    the caller's: the close frame is sent by the transport's task."""
    owner: list[asyncio.Task[Any] | None] = []

    class Closing(Wire):
        async def send_close(self, code: int, reason: str) -> None:
            owner.append(asyncio.current_task())
            await super().send_close(code, reason)

    wire = Closing()
    transport, _ = make(wire)
    transport.close(1000, "")
    assert wire.sent == []
    await settle(transport)
    assert wire.sent == [("close", 1000, "")]
    assert owner[0] is not asyncio.current_task()
    await transport.aclose()


async def test_sends_from_outside_any_task_are_sent_in_order_by_a_task() -> None:
    wire = Wire()
    transport, _ = make(wire)
    done = asyncio.Event()

    def callback() -> None:  # e.g. a timer: there is no current task
        transport.send_text("from a callback")
        transport.send_text("and another")
        done.set()

    asyncio.get_running_loop().call_soon(callback)
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await settle(transport)
    assert wire.sent == [("text", "from a callback"), ("text", "and another")]


async def test_a_send_cannot_leak_context_variables_into_the_caller() -> None:
    import contextvars

    span: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="none")

    class Traced(Wire):
        async def send_one(self, payload: str | bytes, text: bool) -> None:
            span.set(f"send {payload!r}")
            await super().send_one(payload, text)

    wire = Traced()
    transport, _ = make(wire)
    transport.send_text("x")
    assert wire.sent == [("text", "x")] and span.get() == "none"


async def test_a_server_buffer_is_not_counted_twice() -> None:
    """With the server's own buffer reported (aiohttp), a send that suspends after handing its
    frame over is counted there only."""
    wire = Wire()
    in_server = [0]
    transport = WireTransport(wire, 10_000, in_server)
    transport.bind(Signals())  # type: ignore[arg-type]
    wire.unblocked.clear()
    in_server[0] = 600
    transport.send_text("y" * 600)  # handed over, then waits for the socket to drain
    assert transport.buffered_amount() == 600
    transport.send_text("z" * 100)  # queued behind it: counted by the transport
    assert transport.buffered_amount() == 700
    wire.unblocked.set()
    await settle(transport)
    in_server[0] = 0
    assert transport.buffered_amount() == 0


async def test_a_send_that_fails_marks_the_connection_gone() -> None:
    class Gone(Wire):
        async def send_one(self, payload: str | bytes, text: bool) -> None:
            raise ConnectionResetError("socket closed")

    wire = Gone()
    transport, _ = make(wire)
    transport.send_text("lost")
    transport.send_text("also lost")  # ignored, no error
    assert transport._gone and wire.sent == []


async def test_abort_drops_the_backlog() -> None:
    wire = Wire()
    transport, _ = make(wire)
    wire.unblocked.clear()
    transport.send_text("stuck")
    transport.send_text("queued")
    transport.abort()
    assert wire.aborted and transport.buffered_amount() == 0
    await transport.aclose()  # awaits the task abort() cancelled
    assert transport._task is None
    wire.unblocked.set()
    assert wire.sent == []  # nothing was sent after the abort


async def test_step_runs_to_completion_or_first_suspension() -> None:
    async def done() -> None:
        return None

    assert step(done()) is None

    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[object] = []

    async def waits() -> None:
        seen.append(await future)

    rest = step(waits())
    assert rest is not None and seen == []
    task = asyncio.ensure_future(_await(rest))
    future.set_result(7)
    await asyncio.wait_for(task, TIMEOUT)
    assert seen == [7]


async def test_resume_delivers_exceptions_and_cancellation_to_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    failing: asyncio.Future[None] = loop.create_future()
    log: list[str] = []

    async def handles() -> None:
        try:
            await failing
        except ValueError:
            log.append("handled")

    rest = step(handles())
    assert rest is not None
    task = asyncio.ensure_future(_await(rest))
    failing.set_exception(ValueError("boom"))
    await asyncio.wait_for(task, TIMEOUT)
    assert log == ["handled"]

    never: asyncio.Future[None] = loop.create_future()

    async def cleans_up() -> None:
        try:
            await never
        finally:
            log.append("cleanup")

    rest = step(cleans_up())
    assert rest is not None
    task = asyncio.ensure_future(_await(rest))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["handled", "cleanup"] and never.cancelled()


async def _await(awaitable: Any) -> None:
    await awaitable


def test_an_adapter_must_say_how_it_sends_closes_and_drops() -> None:
    class Incomplete(EagerTransport):
        __slots__ = ()

        def _drop(self) -> None:
            pass

    with pytest.raises(TypeError, match="_send_close"):
        Incomplete(close_timeout=1.0, send_buffer_limit=1000)  # type: ignore[abstract]
