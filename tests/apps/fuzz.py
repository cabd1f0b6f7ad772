"""The router the generated-frame tests attack (tests/integration/test_fuzz_frames.py), in a
process of its own so that its memory can be read: ``crosswire run tests.apps.fuzz:app``.

One endpoint, ``/ws``, serves the three dialects (``?dialect=events``, ``?dialect=rover``).
``ping {"n": int}`` is the marker RPC, answered ``pong {"n", "count"}``, ``count`` being the
number of pings the process has answered; ``note {"text": str, "n": int}`` (custom meta
``traceId: str``) is an event with a schema, answered ``noted {"n"}`` so that a frame that
slips through as valid shows. Frames past 64 KiB close the connection with 1009.
"""

from __future__ import annotations

import itertools
from typing import Any

from crosswire import App, Endpoint, EventContext, Router, RpcContext, message, rpc
from crosswire.wire import CANONICAL, EVENTS, ROVER

#: The router's ``max_payload_bytes``: what is longer closes with 1009.
MAX_PAYLOAD = 64 * 1024

Ping = rpc("ping", {"n": int}, "pong", {"n": int, "count": int})
Note = message("note", {"text": str, "n": int}, meta={"traceId": str})
Noted = message("noted", {"n": int})

_pings = itertools.count(1)


def ping(ctx: RpcContext[Any]) -> None:
    ctx.reply({"n": ctx.payload.n, "count": next(_pings)})


def note(ctx: EventContext[Any]) -> None:
    ctx.send(Noted, {"n": ctx.payload.n})


router = Router(max_payload_bytes=MAX_PAYLOAD).rpc(Ping, ping).on(Note, note)
app = App(endpoints=[Endpoint("/ws", router, dialects=[CANONICAL, EVENTS, ROVER])])
