"""Serving in-band authentication (``router.authenticate``): one implementation of seed 003's
scheme for every dialect.

A connection opens unauthenticated, with ``timeout`` seconds to send its dialect's
``authenticate`` frame (4001 ``Authentication timeout`` after). Meanwhile heartbeats are let
through unanswered, and every other frame is answered ``Not authenticated``. The credentials
go to the router's check (three times ``timeout`` to decide, 4001 after); a refusal is
answered ``Authentication failed`` and closed with 4003, a check that raises
``Authentication error`` and 4003. Accepted, the connection is identified, admitted to the
Hub, its heartbeat starts, the dialect's ``authenticated`` answer goes out (seed 003's
dialect has none: the app's ``connected`` is its answer) and the ``on_authenticated``
handlers run.

**Sessions that expire.** An :class:`~crosswire.auth.Identity` with ``expires_at`` ends the
session then (1008 ``Session expired``, :meth:`Peer.expire_at <crosswire.Peer.expire_at>`).
Until then the client may send its ``authenticate`` frame again with new credentials: the
check runs again (``ctx.refreshing``); an Identity of the same user moves the expiry and is
answered ``authenticated`` with the new ``expiresAt``, a refusal ``Refresh refused`` (the
session keeps its old expiry; a check that raises: ``Authentication error``). A session
without an expiry has nothing to refresh: credentials sent twice are answered ``Already
authenticated``, as they are while a check runs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..auth import AUTH_FAILED, AUTH_TIMEOUT, Identity, InBand
from ..errors import ErrorCode, WsError
from ..peer import ReadyState
from ..wire import Control, Envelope
from .context import AuthContext, Serving

if TYPE_CHECKING:
    from .session import Session

__all__ = ["InBandDesk"]

logger = logging.getLogger("crosswire.router")

_OPEN = ReadyState.OPEN


class InBandDesk:
    """The in-band authentication of one dispatcher's connections."""

    def __init__(
        self, dispatch: Serving, scheme: InBand, on_authenticated: Sequence[Callable[[Any], Any]]
    ) -> None:
        self.dispatch = dispatch
        self.scheme = scheme
        self.on_authenticated = on_authenticated

    def opened(self, session: Session) -> None:
        """A connection opened: its credentials are due within the timeout."""
        self._arm(session, self.scheme.timeout)

    def closed(self, session: Session) -> None:
        if session.auth_timer is not None:
            session.auth_timer.cancel()
            session.auth_timer = None
        if session.auth_task is not None:
            session.auth_task.cancel()
            session.auth_task = None

    def before(self, session: Session, envelope: Envelope) -> None:
        """A frame of a connection not authenticated yet."""
        control = session.dialect.controls.get(envelope.type)
        if control is Control.AUTHENTICATE:
            self.credentials(session, envelope)
        elif control is not Control.HEARTBEAT:  # (heartbeats: through, unanswered)
            self._refuse_frame(session, envelope, "Not authenticated")

    def credentials(self, session: Session, envelope: Envelope) -> None:
        """The client's ``authenticate`` frame: the first, or a refresh of a session that
        expires."""
        refreshing = session.authenticated
        if session.auth_task is not None or (refreshing and session.peer.expires_at is None):
            self._refuse_frame(session, envelope, "Already authenticated")
            return
        if not refreshing:
            self._arm(session, 3 * self.scheme.timeout)
        payload = envelope.payload if envelope.has_payload else None
        ctx = AuthContext(
            self.dispatch, session, {} if payload is None else payload, refreshing=refreshing
        )
        cid = envelope.correlation_id
        try:
            result = self.scheme.check(ctx)
        except Exception as exc:
            self._failed(session, exc, cid, refreshing)
            return
        if result is not None and inspect.isawaitable(result):
            later = self._checked_later(session, ctx, result, cid)
            session.auth_task = self.dispatch.app.spawn(later)
        else:
            self._decide(session, ctx, result, cid)

    async def _checked_later(
        self, session: Session, ctx: AuthContext, running: Awaitable[Any], cid: str | None
    ) -> None:
        try:
            result = await running
        except Exception as exc:
            session.auth_task = None
            self._failed(session, exc, cid, ctx.refreshing)
            return
        session.auth_task = None
        self._decide(session, ctx, result, cid)

    def _decide(self, session: Session, ctx: AuthContext, result: Any, cid: str | None) -> None:
        peer = session.peer
        if peer.ready_state is not _OPEN:  # gone, or the check closed it itself
            return
        if ctx.refreshing:
            self._refreshed(session, ctx, result, cid)
            return
        if not result:
            self._refuse(session, "Authentication failed")
            return
        identity = result if isinstance(result, Identity) else Identity()
        self.closed(session)  # the timer
        session.authenticated = True
        ctx.identity = identity
        if identity.user_id is not None:
            peer.identify(identity.user_id)
        if identity.expires_at is not None:
            peer.expire_at(identity.expires_at)
        self.dispatch.app.hub.admit(peer)
        self.dispatch.start_heartbeat(session)
        self._answer(session, identity, cid, first=True)
        for handler in self.on_authenticated:
            self.dispatch.run_plain(handler, ctx)

    def _refreshed(self, session: Session, ctx: AuthContext, result: Any, cid: str | None) -> None:
        """The check's verdict on new credentials of an authenticated client: the session
        goes on with the new expiry, or with its old one when they are refused."""
        peer = session.peer
        identity = result if isinstance(result, Identity) else None
        if identity is None or identity.user_id != peer.user_id:
            # (a refresh cannot make the connection another user's: it would keep the
            # rooms, topics and messages of the first)
            refused = WsError(ErrorCode.UNAUTHENTICATED, "Refresh refused")
            self.dispatch.answer(session, None, refused, cid)
            return
        ctx.identity = identity
        peer.expire_at(identity.expires_at)
        self._answer(session, identity, cid, first=False)

    def _answer(
        self, session: Session, identity: Identity, cid: str | None, *, first: bool
    ) -> None:
        answer: dict[str, Any] = {}
        if identity.user_id is not None:
            answer["userId"] = identity.user_id
        if identity.expires_at is not None:
            answer["expiresAt"] = int(identity.expires_at * 1000)
        frame = session.dialect.authenticated(answer, cid, first=first)
        if frame is not None:
            session.peer.send_frame(frame)

    def _failed(self, session: Session, exc: Exception, cid: str | None, refreshing: bool) -> None:
        logger.error("the authenticate check raised", exc_info=exc)
        if session.peer.ready_state is not _OPEN:
            return
        if refreshing:  # the session goes on until its expiry
            failed = WsError(ErrorCode.UNAUTHENTICATED, "Authentication error")
            self.dispatch.answer(session, None, failed, cid)
        else:
            self._refuse(session, "Authentication error")

    def _refuse(self, session: Session, message: str) -> None:
        refused = WsError(ErrorCode.UNAUTHENTICATED, message)
        self.dispatch.answer(session, None, refused, None)
        session.peer.close(AUTH_FAILED, "Authentication failed")

    def _refuse_frame(self, session: Session, envelope: Envelope, message: str) -> None:
        code = ErrorCode.UNAUTHENTICATED if message == "Not authenticated" else None
        error = WsError(code or ErrorCode.FAILED_PRECONDITION, message)
        self.dispatch.answer(session, None, error, envelope.correlation_id)

    def _arm(self, session: Session, delay: float) -> None:
        if session.auth_timer is not None:
            session.auth_timer.cancel()
        session.auth_timer = self.dispatch.loop.call_later(delay, self._expired, session)

    def _expired(self, session: Session) -> None:
        session.auth_timer = None
        if not session.authenticated:
            session.peer.close(AUTH_TIMEOUT, "Authentication timeout")
