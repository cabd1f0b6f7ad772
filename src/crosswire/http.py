"""The HTTP side of a WebSocket connection: the upgrade request and the answers to it.

Server adapters build a :class:`Request` from their own request object; the ``upgrade`` hook
answers with :class:`Accept` (open the WebSocket, optionally with extra response headers, a chosen
subprotocol and initial context) or :class:`Response` (answer with this HTTP response instead).
Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "HANDSHAKE_HEADERS",
    "Accept",
    "Headers",
    "QueryParams",
    "Request",
    "Response",
    "client_address",
]


#: Header names most requests carry, one string for every connection's ``Headers``.
_SHARED_KEYS = {
    name: name
    for name in (
        "host",
        "connection",
        "upgrade",
        "origin",
        "user-agent",
        "cookie",
        "authorization",
        "pragma",
        "cache-control",
        "accept",
        "accept-encoding",
        "accept-language",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-real-ip",
        "forwarded",
    )
}


class _MultiMap(Mapping[str, str]):
    """An immutable multi-valued mapping; ``m[key]`` is the first value, ``getlist`` all.

    Every connection keeps its request for its lifetime, so the pairs are kept flat in one
    tuple (key, value, key, value, ...), the usual keys shared by every connection: a
    connection's headers cost one tuple, not a dict of lists. Lookups scan it, which for a
    request's few dozen pairs (the servers bound their number) is as fast as hashing."""

    __slots__ = ("_flat",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        flat: list[str] = []
        key = self._key
        for k, v in items:
            k = key(k)
            flat.append(_SHARED_KEYS.get(k, k))  # (not sys.intern: clients choose names)
            flat.append(str(v))
        self._flat = tuple(flat)

    @staticmethod
    def _key(key: str) -> str:
        return key

    def __getitem__(self, key: str) -> str:
        key = self._key(key)
        flat = self._flat
        for i in range(0, len(flat), 2):
            if flat[i] == key:
                return flat[i + 1]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._key(key) in self._flat[::2]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self._flat[::2]))

    def __len__(self) -> int:
        return len(set(self._flat[::2]))

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key``, in the order received (empty if absent)."""
        key = self._key(key)
        flat = self._flat
        return [flat[i + 1] for i in range(0, len(flat), 2) if flat[i] == key]

    def items_all(self) -> list[tuple[str, str]]:
        """Every (key, value) pair, repeated keys included, in the order received."""
        flat = self._flat
        return list(zip(flat[::2], flat[1::2], strict=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.items_all()!r})"


class Headers(_MultiMap):
    """HTTP headers: case-insensitive keys (stored lower-case), repeated headers kept."""

    __slots__ = ()

    @staticmethod
    def _key(key: str) -> str:
        return key.lower()

    def __repr__(self) -> str:
        # Never print header values: they carry cookies and tokens.
        return f"Headers({sorted(self)!r})"


class QueryParams(_MultiMap):
    """Query-string parameters, parsed once; repeated keys kept."""

    __slots__ = ()

    @classmethod
    def parse(cls, query_string: str) -> QueryParams:
        return cls(parse_qsl(query_string, keep_blank_values=True))

    def __repr__(self) -> str:
        return f"QueryParams({sorted(self)!r})"


#: The headers only the WebSocket handshake reads; an open connection's request drops them.
HANDSHAKE_HEADERS = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    }
)


@dataclass(frozen=True, slots=True)
class Request:
    """The HTTP request that asked to open a WebSocket.

    ``path`` excludes the query string; ``query`` is parsed from ``query_string``.
    ``remote_address`` is the client's IP address as the server saw it (``None`` when the
    server does not know, e.g. over a Unix socket).
    """

    path: str
    query_string: str = ""
    headers: Headers = field(default_factory=Headers)
    remote_address: str | None = None
    query: QueryParams = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "query", QueryParams.parse(self.query_string))

    @property
    def subprotocols(self) -> list[str]:
        """Subprotocols the client offered in ``Sec-WebSocket-Protocol``, in its order."""
        offered: list[str] = []
        for value in self.headers.getlist("sec-websocket-protocol"):
            offered.extend(p.strip() for p in value.split(",") if p.strip())
        return offered

    @property
    def is_websocket(self) -> bool:
        """Whether the request asks to upgrade to WebSocket."""
        return self.headers.get("upgrade", "").lower() == "websocket"

    def opened(self) -> Request:
        """This request as an open connection keeps it (``peer.request``): without the
        headers only the handshake reads (:data:`HANDSHAKE_HEADERS`), which every connection
        would otherwise keep for its lifetime."""
        kept = [(k, v) for k, v in self.headers.items_all() if k not in HANDSHAKE_HEADERS]
        return Request(self.path, self.query_string, Headers(kept), self.remote_address)

    def __repr__(self) -> str:
        return f"Request(path={self.path!r}, remote_address={self.remote_address!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    """Open the WebSocket.

    ``headers`` are added to the 101 response. ``subprotocol`` must be one the client offered.
    ``context`` seeds ``peer.context`` before the ``open`` hook runs. ``expires_at`` (Unix
    time in seconds, as a token's ``exp``) ends the session then: the connection is closed
    with 1008 ``"Session expired"`` (see :meth:`Peer.expire_at <crosswire.Peer.expire_at>`).
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    subprotocol: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None

    def chosen(self, subprotocol: str | None) -> Accept:
        """This acceptance with the subprotocol the server actually selected (None when the
        client did not offer the one asked for)."""
        if subprotocol == self.subprotocol:
            return self
        return replace(self, subprotocol=subprotocol)


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response sent instead of opening the WebSocket (a rejection, or a plain page).

    ``body`` may be text (sent as UTF-8) or bytes; ``content_type`` defaults to plain text.
    """

    status: int
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body

    def header_items(self) -> list[tuple[str, str]]:
        """Headers to send, with ``Content-Type`` unless the user set one."""
        items = list(self.headers.items())
        if not any(k.lower() == "content-type" for k, _ in items):
            items.append(("Content-Type", self.content_type))
        return items


def client_address(request: Request, trusted_proxies: frozenset[str]) -> str | None:
    """The client's address: the socket's, unless the socket is a trusted proxy's, which
    says in ``X-Forwarded-For`` whom it forwards. Read from the right (what the nearest
    proxy appended), skipping trusted proxies: the first other address is the client's (one
    a client wrote itself, further left, is never believed). Addresses that are not IP
    addresses end the walk."""
    peer = request.remote_address
    if peer is None or peer not in trusted_proxies:
        return peer
    forwarded = request.headers.get("x-forwarded-for")
    if not forwarded:
        return peer
    found = peer
    for hop in reversed([part.strip() for part in forwarded.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        found = hop
        if hop not in trusted_proxies:
            break
    return found
