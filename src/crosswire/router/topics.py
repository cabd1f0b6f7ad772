"""Serving topic requests: a client's joins and leaves, in any dialect.

One implementation for every dialect (the dialect reads the requests and writes the
answers, :mod:`crosswire.wire.dialect`):

1. the dialect reads the topics a ``JOIN`` or ``LEAVE`` frame names (a bad frame is answered
   with the dialect's error);
2. the router's ``on_auth`` gate decides first, as for any message;
3. a join: refused as a whole with ``RESOURCE_EXHAUSTED`` (``details.limit``) when it would
   take the connection past ``Limits.max_topics``; else, for each topic in order, the route
   that matches it (none: ``NOT_FOUND``), its data schema (``INVALID_ARGUMENT``), its join
   handler (accept, reject, or raise), then the subscription in the Hub; a topic the
   connection is already in is acknowledged again without running the handler;
4. a leave: the leave handler of each topic the connection is in, while it still is, then
   the unsubscription; a leave is never refused;
5. the answers, in the dialect (``join_ack``/``join_error``/``leave_ack`` in Rover's, the
   ``$ws:`` frames in the canonical one, an ``error`` event for refusals in seed 003's).

Handlers may be plain or ``async``. A connection's topic frames are served one after the
other, in the order they came: while a handler awaits, the next frames wait (up to the
router's ``max_inflight_events``; past it they get ``RESOURCE_EXHAUSTED``), so that a leave
sent after a join is served after it. The waiting work runs in a task that counts against
``max_inflight_events`` too.
"""

from __future__ import annotations

import collections
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import BusError, ErrorCode, ValidationError, WsError
from ..peer import ReadyState
from ..pubsub.hub import PRESENCE_PREFIX
from ..topics import MAX_TOPIC, TopicRoute, TopicTable
from ..wire import BadFrame, Control, Envelope, TopicAnswer, TopicRequest
from ..wire.dialect import Position
from .context import JoinContext, LeaveContext, Serving

if TYPE_CHECKING:
    from .session import Session

__all__ = ["TopicDesk"]

logger = logging.getLogger("crosswire.router")

_OPEN = ReadyState.OPEN


class TopicDesk:
    """The joins and leaves of one dispatcher's connections."""

    def __init__(
        self, dispatch: Serving, table: TopicTable, on_auth: Sequence[Callable[[Any], Any]]
    ) -> None:
        self.dispatch = dispatch
        #: The router's topics, and its ``on_auth`` handlers (the same objects: the router
        #: may add to them while served).
        self.table = table
        self.on_auth = on_auth

    # -- joins -------------------------------------------------------------------------------

    def request(self, session: Session, envelope: Envelope, control: Control) -> None:
        """A ``JOIN`` or ``LEAVE`` control frame: served now, or after the connection's
        topic frames still being served."""
        backlog = session.topic_backlog
        if backlog is None:
            running = self._serve(session, envelope, control)
            if running is not None:
                session.topic_backlog = collections.deque()
                self.dispatch.run_task(session, self._serve_backlog(session, running))
            return
        if len(backlog) >= self.dispatch.max_events:
            busy = WsError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"too many topic requests waiting (limit {self.dispatch.max_events})",
                retry_after_ms=100,
            )
            self.dispatch.answer(session, None, busy, envelope.correlation_id)
            return
        backlog.append((envelope, control))

    async def _serve_backlog(self, session: Session, running: Awaitable[Any]) -> None:
        """Finish the frame being served, then the frames that came meanwhile, in order."""
        try:
            await running
            backlog = session.topic_backlog
            while backlog:
                envelope, control = backlog.popleft()
                more = self._serve(session, envelope, control)
                if more is not None:
                    await more
        finally:
            session.topic_backlog = None

    def _serve(self, session: Session, envelope: Envelope, control: Control) -> Any:
        """Serve one frame: None when done inline, else what is left to await."""
        requests = self._requests(session, envelope)
        if requests is None:
            return None
        if control is Control.JOIN:
            serve: Callable[[], Any] = lambda: self._joins(session, requests)  # noqa: E731
        else:
            serve = lambda: self._serve_leaves(session, list(requests), [])  # noqa: E731
        return self._gated(session, requests[0], serve)

    def _joins(self, session: Session, requests: list[TopicRequest]) -> Any:
        """Serve the joins of one frame: None when done inline, else a coroutine to run. A
        topic named twice in one frame is served once (the first)."""
        if len({r.topic for r in requests}) != len(requests):
            first: dict[str, TopicRequest] = {}
            for request in requests:
                first.setdefault(request.topic, request)
            requests = list(first.values())
        peer = session.peer
        joined = peer.topics
        new = {r.topic for r in requests if r.topic not in joined}
        limit = self.dispatch.app.limits.max_topics
        if len(joined) + len(new) > limit:
            too_many = WsError(
                ErrorCode.RESOURCE_EXHAUSTED,
                "too many topics",
                {"limit": limit},
                retryable=False,
            )
            return self._answer_joins(
                session, [TopicAnswer(r, too_many, whole=True) for r in requests]
            )
        return self._serve_joins(session, list(requests), [])

    def _serve_joins(
        self, session: Session, pending: list[TopicRequest], done: list[TopicAnswer]
    ) -> Any:
        while pending:
            request = pending.pop(0)
            outcome = self._join_one(session, request)
            if isinstance(outcome, TopicAnswer):
                done.append(outcome)
                continue
            return self._serve_joins_later(session, request, outcome, pending, done)
        return self._answer_joins(session, done)

    async def _serve_joins_later(
        self,
        session: Session,
        request: TopicRequest,
        running: tuple[JoinContext, Awaitable[Any]],
        pending: list[TopicRequest],
        done: list[TopicAnswer],
    ) -> None:
        ctx, result = running
        try:
            await result
        except Exception as exc:
            ctx._error = self._refusal(ctx, exc)
        done.append(self._settle(ctx, request))
        rest = self._serve_joins(session, pending, done)
        if rest is not None:
            await rest

    def _join_one(
        self, session: Session, request: TopicRequest
    ) -> TopicAnswer | tuple[JoinContext, Awaitable[Any]]:
        """Serve one join until its handler is done (an answer), or has to be awaited."""
        topic = request.topic
        if topic in session.peer.topics:  # already in: acknowledged again
            return TopicAnswer(request)
        found = self.table.find(topic) if len(topic) <= MAX_TOPIC else None
        if found is None:
            return TopicAnswer(request, WsError(ErrorCode.NOT_FOUND, f"no topic {topic!r}"))
        route, params = found
        try:
            payload = _payload(route, request)
        except ValidationError as exc:
            invalid = WsError(ErrorCode.INVALID_ARGUMENT, str(exc), {"issues": exc.issues})
            return TopicAnswer(request, invalid)
        ctx = JoinContext(self.dispatch, session, topic, params, payload)
        if route.join is not None:
            try:
                result = route.join(ctx)
            except Exception as exc:
                ctx._error = self._refusal(ctx, exc)
            else:
                if result is not None and inspect.isawaitable(result):
                    return ctx, result
        return self._settle(ctx, request)

    def _settle(self, ctx: JoinContext, request: TopicRequest) -> TopicAnswer:
        """The answer to a join whose handler is done (subscribed when it is sent)."""
        return TopicAnswer(request, ctx._error, ctx._ack, presence=ctx._presence)

    def _refusal(self, ctx: JoinContext, exc: Exception) -> WsError:
        """What a join handler that raised answers: its WsError, else ``INTERNAL``."""
        error = self.dispatch.as_ws_error(exc, None)
        self.dispatch.notify(error, None)
        return error

    def _answer_joins(self, session: Session, answers: list[TopicAnswer]) -> Any:
        """Subscribe the accepted joins, recover what positioned ones missed, answer, then
        send what they missed, in one turn of the event loop, so that nothing published
        meanwhile comes in between (or before the ack). When the history is on the bus,
        reading it takes a round trip: a coroutine to await is returned, and what comes
        meanwhile waits for the replay (``Hub.recover_shared``)."""
        peer = session.peer
        if peer.ready_state is not _OPEN:
            return None
        hub = self.dispatch.app.hub
        positioned: list[int] = []
        for i, answer in enumerate(answers):
            if answer.error is not None:
                continue
            topic = answer.request.topic
            new = topic not in peer.topics
            tracked = hub.tracks_presence(topic)
            try:
                peer.subscribe(topic)
                if answer.request.presence and tracked:
                    peer.subscribe(PRESENCE_PREFIX + topic)
            except WsError as exc:  # past Limits.max_topics meanwhile: none of it
                if new:
                    peer.unsubscribe(topic)
                answers[i] = replace(answer, error=exc)
                continue
            if new and tracked:
                hub.present(peer, topic, answer.presence)
            if answer.request.positioned:
                positioned.append(i)
        if positioned and hub.shares_history:
            for i in positioned:  # this turn: nothing may reach it before its ack and replay
                hub.hold(peer, answers[i].request.topic)
            return self._answer_recovered_joins(session, answers, positioned)
        missed: list[Any] = []
        for i in positioned:
            request = answers[i].request
            recovered, position, lost = hub.recover(peer, request.topic, request.since)
            answers[i] = replace(answers[i], recovered=recovered, position=position)
            missed.extend(lost)
        for frame in session.dialect.joined(answers):
            peer.send_frame(frame)
        if missed:
            hub.replay(peer, missed)
        return None

    async def _answer_recovered_joins(
        self, session: Session, answers: list[TopicAnswer], positioned: list[int]
    ) -> None:
        peer = session.peer
        hub = self.dispatch.app.hub
        found = []
        for i in positioned:
            request = answers[i].request
            if peer.ready_state is not _OPEN:
                break
            recovered, position, missed = await hub.recover_shared(
                peer, request.topic, request.since
            )
            answers[i] = replace(answers[i], recovered=recovered, position=position)
            found.append((request.topic, missed, position))
        if peer.ready_state is not _OPEN:
            for i in positioned:  # (closed meanwhile: the Hub forgot it; forget the rest)
                hub.finish_recovery(peer, answers[i].request.topic, [], Position(0, ""))
            return
        for frame in session.dialect.joined(answers):
            peer.send_frame(frame)
        for topic, missed, position in found:
            hub.finish_recovery(peer, topic, missed, position)

    # -- presence ----------------------------------------------------------------------------

    def presence(self, session: Session, envelope: Envelope) -> None:
        """A ``PRESENCE`` request: who is in each topic it names (the connection must be in
        it), answered once the store has answered."""
        requests = self._requests(session, envelope)
        if requests is None:
            return
        peer = session.peer
        hub = self.dispatch.app.hub
        for request in requests:
            if not hub.tracks_presence(request.topic):
                untracked = WsError(
                    ErrorCode.FAILED_PRECONDITION,
                    f"topic {request.topic!r} keeps no presence",
                )
                self.dispatch.answer(session, None, untracked, request.correlation_id)
                continue
            if request.topic not in peer.topics:
                outside = WsError(
                    ErrorCode.PERMISSION_DENIED,
                    f"join {request.topic!r} to see who is in it",
                )
                self.dispatch.answer(session, None, outside, request.correlation_id)
                continue
            self.dispatch.run_task(session, self._answer_presence(session, request))

    async def _answer_presence(self, session: Session, request: TopicRequest) -> None:
        try:
            entries = await self.dispatch.app.hub.presence(request.topic)
        except BusError as exc:
            unavailable = WsError(ErrorCode.UNAVAILABLE, f"presence: {exc}")
            self.dispatch.answer(session, None, unavailable, request.correlation_id)
            return
        members = [{"clientId": e.client_id, "userId": e.user_id, "data": e.data} for e in entries]
        if session.peer.ready_state is _OPEN:
            session.peer.send_frame(session.dialect.presence(request, members))

    # -- leaves ------------------------------------------------------------------------------

    def _serve_leaves(
        self, session: Session, pending: list[TopicRequest], done: list[TopicAnswer]
    ) -> Any:
        while pending:
            request = pending.pop(0)
            running = self._leave_one(session, request)
            if running is not None:
                return self._serve_leaves_later(session, request, running, pending, done)
            done.append(TopicAnswer(request))
        self._answer_leaves(session, done)
        return None

    async def _serve_leaves_later(
        self,
        session: Session,
        request: TopicRequest,
        running: Awaitable[Any],
        pending: list[TopicRequest],
        done: list[TopicAnswer],
    ) -> None:
        try:
            await running
        except Exception:
            logger.exception("the leave handler of topic %r raised", request.topic)
        session.peer.unsubscribe(request.topic)
        done.append(TopicAnswer(request))
        rest = self._serve_leaves(session, pending, done)
        if rest is not None:
            await rest

    def _leave_one(self, session: Session, request: TopicRequest) -> Awaitable[Any] | None:
        """Leave one topic: its leave handler runs first, while the connection is still a
        member; an awaitable when the handler has to be awaited (the caller unsubscribes)."""
        topic = request.topic
        peer = session.peer
        found = self.table.find(topic) if topic in peer.topics else None
        leave = found[0].leave if found is not None else None
        if found is not None and leave is not None:
            params = found[1]
            ctx = LeaveContext(self.dispatch, session, topic, params, request.data)
            try:
                result = leave(ctx)
            except Exception:
                logger.exception("the leave handler of topic %r raised", topic)
            else:
                if result is not None and inspect.isawaitable(result):
                    return result
        peer.unsubscribe(topic)
        return None

    def _answer_leaves(self, session: Session, answers: list[TopicAnswer]) -> None:
        if session.peer.ready_state is _OPEN:
            for frame in session.dialect.left(answers):
                session.peer.send_frame(frame)

    # -- both --------------------------------------------------------------------------------

    def _requests(self, session: Session, envelope: Envelope) -> list[TopicRequest] | None:
        """The topics a frame names; None when it is bad (answered) or names none."""
        try:
            requests = session.dialect.topic_requests(envelope)
        except BadFrame as exc:
            self.dispatch.fail(session, None, exc, exc.correlation_id)
            return None
        return requests or None

    def _gated(self, session: Session, first: TopicRequest, serve: Callable[[], Any]) -> Any:
        """``serve()`` behind the router's ``on_auth`` gate: None when done, else what is
        left to await."""
        dispatch = self.dispatch
        if self.on_auth:
            ctx = JoinContext(dispatch, session, first.topic, {}, first.data)
            result = dispatch.auth_gate(ctx, serve)
        else:
            result = serve()
        return result if result is not None and inspect.isawaitable(result) else None


def _payload(route: TopicRoute, request: TopicRequest) -> Any:
    """The join's data, validated against the route's schema when it has one."""
    if route.data is None:
        return request.data
    return route.data.load(request.data if request.data is not None else {})
