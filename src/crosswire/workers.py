"""Several processes on one port: the parent that forks the workers, restarts those that die,
and drains them all on SIGINT or SIGTERM (``serve(app, workers=N)``, ``crosswire run
--workers N``).

The parent serves nothing. It holds one listening socket per worker (on Linux, N sockets
bound to the same port with ``SO_REUSEPORT``: the kernel spreads new connections across their
accept queues; elsewhere one socket that every worker accepts from). Each worker is forked
with its own socket, and the parent keeps its copy, so a worker that dies takes none of the
port with it: the connections the kernel queues on its socket meanwhile wait for the worker
that replaces it instead of being refused or reset.

A worker tells the parent it is listening (the App started, the bus connected) through a
pipe; until all have, the parent announces nothing, and one that fails first stops them all
(:class:`~crosswire.WorkerError`, or the worker's :class:`~crosswire.ConfigurationError`).
One that dies later is replaced at once, then after a growing delay
(:class:`~crosswire.restarts.RestartBudget`); one that dies too often stops them all.
SIGINT or SIGTERM stops them all: each closes its connections with 1001; one still running
after ``drain_timeout`` seconds is killed. Each worker also reads a pipe whose other end only
the parent holds, so that workers stop when the parent ends, even killed.

The parent's loop is blocking and single-threaded (no event loop to carry across
``fork()``): a selector on the workers' pipes and on a pipe the signal handlers write to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigurationError, WorkerError
from .restarts import RestartBudget

__all__ = ["DRAIN_TIMEOUT", "Work", "WorkerPool"]

logger = logging.getLogger("crosswire.server")

#: Seconds the workers have to close their connections after SIGTERM before they are killed:
#: an App's shutdown takes about 5 (its grace period), the server's stop a little more.
DRAIN_TIMEOUT = 15.0

#: ``work(sock, lifeline, ready)`` serves on ``sock`` in a worker until SIGINT or SIGTERM, or
#: until ``lifeline`` (a file descriptor) is readable; it calls ``ready()`` once listening.
Work = Callable[[socket.socket, int, Callable[[], None]], None]

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
_READY = b"R"
_FAILED = b"E"


class _Slot:
    """One place in the pool: its socket, and the worker now serving it."""

    __slots__ = ("budget", "pid", "ready", "replaces", "restart_at", "said", "sock", "status")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.budget = RestartBudget()
        self.pid: int | None = None
        self.replaces: int | None = None  # the pid of the worker it replaces
        self.ready = False
        self.status: int | None = None  # the parent's end of the worker's status pipe
        self.said = b""  # what the worker wrote there
        self.restart_at: float | None = None


class WorkerPool:
    """Workers serving ``listeners`` (one each, in order), each running ``work``."""

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        work: Work,
        *,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        self._slots = [_Slot(sock) for sock in listeners]
        self._work = work
        self._drain_timeout = drain_timeout
        self._selector = selectors.DefaultSelector()
        self._started = False  # every worker has been listening once
        self._draining_since: float | None = None
        self._kill_at: float | None = None
        self._failure: Exception | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._wakeup = (-1, -1)
        self._lifeline = (-1, -1)

    def run(self, announce: Callable[[], None]) -> None:
        """Fork the workers; call ``announce()`` once every one is listening; return once
        SIGINT or SIGTERM stopped them all. Raises :class:`~crosswire.WorkerError` (or a
        worker's :class:`~crosswire.ConfigurationError`) if they could not go on; every
        worker has exited by then. Call it from the main thread."""
        self._wakeup = os.pipe()
        self._lifeline = os.pipe()
        os.set_blocking(self._wakeup[1], False)
        self._selector.register(self._wakeup[0], selectors.EVENT_READ, self._on_signals)
        self._previous = {sig: signal.signal(sig, _note) for sig in _SIGNALS}
        previous_wakeup = signal.set_wakeup_fd(self._wakeup[1])
        try:
            for slot in self._slots:
                self._fork(slot)
            while self._running():
                self._step(announce)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._kill_leftovers()
            self._close()
        if self._failure is not None:
            raise self._failure

    def _running(self) -> bool:
        return any(slot.pid is not None or slot.restart_at is not None for slot in self._slots)

    def _step(self, announce: Callable[[], None]) -> None:
        now = time.monotonic()
        timers = [s.restart_at for s in self._slots if s.restart_at is not None]
        if self._kill_at is not None:
            timers.append(self._kill_at)
        timeout = max(0.0, min(timers) - now) if timers else None
        for key, _ in self._selector.select(timeout):
            key.data(key.fd)
        self._reap()
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                slot.restart_at = None
                self._fork(slot)
        if self._kill_at is not None and self._kill_at <= now:
            self._kill_at = None
            self._kill_stragglers()
        waiting = not self._started and self._draining_since is None
        if waiting and all(slot.ready for slot in self._slots):
            self._started = True
            announce()

    # -- the workers ---------------------------------------------------------------------

    def _fork(self, slot: _Slot) -> None:
        status, said = os.pipe()
        # Signals wait until the child has put the usual handlers back: one that came before
        # would run the parent's handler in the child, and be lost.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._become_worker(slot, status, said, mask)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(said)
        slot.pid, slot.ready, slot.status, slot.said = pid, False, status, b""
        self._selector.register(status, selectors.EVENT_READ, lambda fd: self._on_status(slot))
        if slot.replaces is not None:
            logger.info("worker %d started in place of worker %d", pid, slot.replaces)

    def _become_worker(
        self, slot: _Slot, status: int, said: int, mask: set[int | signal.Signals]
    ) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self._selector.close()
            os.close(status)
            for fd in (*self._wakeup, self._lifeline[1]):
                os.close(fd)
            for other in self._slots:
                if other.status is not None:
                    os.close(other.status)
                if other.sock is not slot.sock:
                    other.sock.close()

            def ready() -> None:
                os.write(said, _READY)

            self._work(slot.sock, self._lifeline[0], ready)
            code = 0
        except ConfigurationError as exc:  # the parent raises it again, as one process would
            with contextlib.suppress(OSError):
                os.write(said, _FAILED + str(exc).encode()[:4000])
        except BaseException:
            logger.exception("worker %d failed", os.getpid())
        finally:
            os._exit(code)

    def _on_status(self, slot: _Slot) -> None:
        assert slot.status is not None
        data = os.read(slot.status, 4096)
        slot.said += data
        if slot.said.startswith(_READY):
            slot.ready = True
        if not data:
            self._selector.unregister(slot.status)
            os.close(slot.status)
            slot.status = None

    def _reap(self) -> None:
        """Collect the workers that exited (only them: the process may have other children)."""
        for slot in self._slots:
            if slot.pid is None:
                continue
            pid, wait_status = os.waitpid(slot.pid, os.WNOHANG)
            if pid == 0:
                continue
            while slot.status is not None:  # what it wrote before it exited
                self._on_status(slot)
            slot.pid = None
            self._exited(slot, pid, os.waitstatus_to_exitcode(wait_status))

    def _exited(self, slot: _Slot, pid: int, code: int) -> None:
        how = _how(code)
        if self._draining_since is not None:
            # Not said: stopped by SIGTERM before it had its handlers, or failed to start as
            # the worker being reported did.
            if code not in (0, -signal.SIGTERM) and not slot.said.startswith(_FAILED):
                logger.warning("worker %d %s while stopping", pid, how)
            return
        if not self._started and not slot.ready:
            self._fail(_start_failure(pid, how, slot.said))
            return
        delay = slot.budget.next_delay(time.monotonic())
        if delay is None:
            budget = slot.budget
            self._fail(
                WorkerError(
                    f"worker {pid} {how}, and its place had already been restarted "
                    f"{budget.limit} times in {budget.window:g} s: stopping every worker"
                )
            )
            return
        later = f" in {delay:g} s" if delay else ""
        logger.warning("worker %d %s; starting another%s", pid, how, later)
        slot.replaces = pid
        slot.restart_at = time.monotonic() + delay

    def _fail(self, failure: Exception) -> None:
        """Stop every worker, then raise ``failure`` (the caller says it)."""
        self._failure = failure
        self._drain()

    # -- stopping ------------------------------------------------------------------------

    def _on_signals(self, fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            received = os.read(fd, 512)
            if signal.SIGINT in received or signal.SIGTERM in received:
                self._drain()

    def _drain(self) -> None:
        """Stop every worker: SIGTERM, then SIGKILL after the drain timeout."""
        if self._draining_since is not None:
            return
        self._draining_since = time.monotonic()
        self._kill_at = self._draining_since + self._drain_timeout
        for slot in self._slots:
            slot.restart_at = None
            # Once its worker stops listening, the socket closes: nothing more is accepted.
            slot.sock.close()
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)

    def _kill_stragglers(self) -> None:
        for slot in self._slots:
            if slot.pid is not None:
                logger.warning(
                    "worker %d still running %g s after SIGTERM: killing it",
                    slot.pid,
                    self._drain_timeout,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)

    def _kill_leftovers(self) -> None:
        """The loop ended early (an exception): kill and reap the workers still running."""
        for slot in self._slots:
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(slot.pid, 0)
                slot.pid = None

    def _close(self) -> None:
        for slot in self._slots:
            slot.sock.close()
            if slot.status is not None:
                os.close(slot.status)
                slot.status = None
        self._selector.close()
        for fd in (*self._wakeup, *self._lifeline):
            os.close(fd)


def _note(signum: int, frame: object) -> None:
    """The signal is read from the wakeup pipe; the handler only has to exist."""


def _how(code: int) -> str:
    """How a worker ended, from its exit code (negative: the signal that killed it)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def _start_failure(pid: int, how: str, said: bytes) -> Exception:
    if said.startswith(_FAILED):
        return ConfigurationError(said[len(_FAILED) :].decode(errors="replace"))
    return WorkerError(f"worker {pid} {how} before it was listening: stopping every worker")
