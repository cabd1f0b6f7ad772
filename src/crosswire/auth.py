"""Authentication parts: a client's token read from the handshake, and what an in-band
authentication finds. No I/O.

**At the handshake**, :func:`bearer_token` reads a token from the ``Authorization`` header, a
``bearer.<token>`` subprotocol, or the query string (for ``upgrade`` hooks).
**In band**, after the socket opened, ``router.authenticate(check, timeout=...)`` (seed 003's
scheme, any dialect) lets ``check`` return an :class:`Identity`; the close codes are
:data:`AUTH_TIMEOUT` and :data:`AUTH_FAILED`.

::

    def upgrade(request: Request) -> Accept | Response:
        credentials = bearer_token(request)
        user = verify(credentials.token) if credentials else None
        if user is None:
            return Response(401, "a valid token is required")
        # A browser fails the connection unless the subprotocol it offered comes back.
        return Accept(subprotocol=credentials.subprotocol, context={"user": user})

Browsers cannot set headers on a WebSocket: they send the token in the query (which proxies
may log) or as a subprotocol (which they do not). crosswire never logs a request's query or
headers, and :class:`Credentials` hides its token in ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Literal

from .http import Request

__all__ = [
    "AUTH_FAILED",
    "AUTH_TIMEOUT",
    "Credentials",
    "Identity",
    "InBand",
    "bearer_token",
    "cookie_token",
]

#: Close code: no credentials in time (``Authentication timeout``), seed 003's.
AUTH_TIMEOUT = 4001
#: Close code: the credentials were refused, or checking them failed (``Authentication
#: failed``), seed 003's.
AUTH_FAILED = 4003


@dataclass(frozen=True, slots=True)
class Identity:
    """Who an in-band authentication found: the connection's user (None: no user, an
    anonymous connection) and metadata about it.

    ``expires_at`` (Unix time in seconds, as a token's ``exp``; None: never) ends the
    session: the connection is closed then with 1008 ``"Session expired"``, unless the client
    refreshed it by sending its ``authenticate`` frame again with new credentials (the check
    runs again, with ``ctx.refreshing``, and its Identity, of the same user, sets the new
    expiry)."""

    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """A token and where it came from. ``subprotocol`` is the offered subprotocol that carried
    it (``None`` otherwise): accept the connection with it."""

    token: str = field(repr=False)
    source: Literal["header", "protocol", "query", "cookie"]
    subprotocol: str | None = None


def bearer_token(
    request: Request,
    *,
    query_param: str = "access_token",
    protocol_prefix: str = "bearer.",
) -> Credentials | None:
    """The client's token: from ``Authorization: Bearer <token>``, else the first offered
    subprotocol ``<protocol_prefix><token>``, else the query parameter ``query_param``;
    ``None`` if there is none (or it is empty). The defaults match
    :class:`crosswire.client.Auth` and WS-Kit's client."""
    parts = request.headers.get("authorization", "").split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return Credentials(parts[1].strip(), "header")
    for offered in request.subprotocols:
        if offered.startswith(protocol_prefix) and len(offered) > len(protocol_prefix):
            return Credentials(offered[len(protocol_prefix) :], "protocol", offered)
    token = request.query.get(query_param)
    if token:
        return Credentials(token, "query")
    return None


def cookie_token(request: Request, name: str) -> Credentials | None:
    """The value of the cookie ``name`` from the handshake's ``Cookie`` header, or None.

    A browser sends its cookies with every WebSocket handshake to the site, whichever page
    opens it: another site's page can open one as your user (cross-site WebSocket
    hijacking). So an App that authenticates by cookie must list the origins allowed to
    open WebSockets: ``App(..., session_cookie=name, origins={...})`` refuses to start
    without them."""
    header = request.headers.get("cookie")
    if not header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    if morsel is None or not morsel.value:
        return None
    return Credentials(morsel.value, "cookie")


@dataclass(frozen=True, slots=True)
class InBand:
    """A router's in-band authentication: its check, and the seconds to send credentials."""

    check: Callable[[Any], Any]
    timeout: float
