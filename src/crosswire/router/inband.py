"""Serving in-band authentication (``router.authenticate``): one implementation of seed 003's
scheme for every dialect.

A connection opens unauthenticated, with ``timeout`` seconds to send its dialect's
``authenticate`` frame (4001 ``Authentication timeout`` after). Meanwhile heartbeats are let
through unanswered, and every other frame is answered ``Not authenticated``. The credentials
go to the router's check (three times ``timeout`` to decide, 4001 after); a refusal is
answered ``Authentication failed`` and closed with 4003, a check that raises
``Authentication error`` and 4003. Accepted, the connection is identified, admitted to the
Hub, its heartbeat starts, and the ``on_authenticated`` handlers run. Credentials sent twice
are answered ``Already authenticated``.
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
        """The client's ``authenticate`` frame."""
        if session.authenticated or session.auth_task is not None:
            self._refuse_frame(session, envelope, "Already authenticated")
            return
        self._arm(session, 3 * self.scheme.timeout)
        payload = envelope.payload if envelope.has_payload else None
        ctx = AuthContext(self.dispatch, session, {} if payload is None else payload)
        try:
            result = self.scheme.check(ctx)
        except Exception as exc:
            self._failed(session, exc)
            return
        if result is not None and inspect.isawaitable(result):
            session.auth_task = self.dispatch.app.spawn(self._checked_later(session, ctx, result))
        else:
            self._decide(session, ctx, result)

    async def _checked_later(
        self, session: Session, ctx: AuthContext, running: Awaitable[Any]
    ) -> None:
        try:
            result = await running
        except Exception as exc:
            session.auth_task = None
            self._failed(session, exc)
            return
        session.auth_task = None
        self._decide(session, ctx, result)

    def _decide(self, session: Session, ctx: AuthContext, result: Any) -> None:
        peer = session.peer
        if peer.ready_state is not _OPEN:  # gone, or the check closed it itself
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
        self.dispatch.app.hub.admit(peer)
        self.dispatch.start_heartbeat(session)
        for handler in self.on_authenticated:
            self.dispatch.run_plain(handler, ctx)

    def _failed(self, session: Session, exc: Exception) -> None:
        logger.error("the authenticate check raised", exc_info=exc)
        if session.peer.ready_state is _OPEN:
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
