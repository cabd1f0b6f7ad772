"""Autobahn|Testsuite cases a server may fail, each with the reason. The test fails on any
other failure, and on an entry here that passes (so that the list stays true).
docs/servers.md says what differs between servers.
"""

from __future__ import annotations

__all__ = ["ALLOWED"]

#: websockets' own documented deviation (its compliance/README.rst): a close frame in the
#: middle of a fragmented message is a protocol error to websockets, answered with 1002
#: where Autobahn expects the client's 1000 echoed. RFC 6455 only says an endpoint
#: "typically" echoes the code.
_CLOSE_INSIDE_A_MESSAGE = (
    "websockets' documented deviation: a close frame in the middle of a fragmented message "
    "is answered with 1002, not the 1000 echoed that Autobahn expects (RFC 6455: 'typically')"
)

#: websockets refuses a message of more than 4,096 fragments with 1009 "too many fragments"
#: (WEBSOCKETS_MAX_FRAGMENTS, read when websockets is imported). crosswire keeps the cap: it
#: bounds the memory a message of tiny fragments costs (a frame object per fragment).
_FRAGMENT_CAP = (
    "websockets caps a message at 4,096 fragments (WEBSOCKETS_MAX_FRAGMENTS) to bound "
    "per-fragment memory: 4 MiB in fragments of 64 B to 1 KiB is refused with 1009"
)

ALLOWED: dict[str, dict[str, str]] = {
    "websockets": {
        "7.1.5": _CLOSE_INSIDE_A_MESSAGE,
        "9.3.1": _FRAGMENT_CAP,
        "9.3.2": _FRAGMENT_CAP,
        "9.3.3": _FRAGMENT_CAP,
        "9.4.1": _FRAGMENT_CAP,
        "9.4.2": _FRAGMENT_CAP,
        "9.4.3": _FRAGMENT_CAP,
    },
    "picows": {
        "7.1.2": (
            "picows parses one frame ahead of the one it hands over: a second close frame "
            "in the same read fails the connection with 1002 before the first reaches "
            "crosswire, which would answer it with 1000"
        ),
    },
    "aiohttp": {},
    # uvicorn speaks WebSocket through websockets' sans-I/O core.
    "uvicorn": {"7.1.5": _CLOSE_INSIDE_A_MESSAGE},
    "hypercorn": {},
}
