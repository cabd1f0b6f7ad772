"""The typed layer end to end: an event, an RPC, and an RPC with progress.

    crosswire run examples.echo:app

Speaks the canonical dialect (docs/protocol.md):

- ``ECHO {text}`` is answered with ``ECHO {text}``;
- RPC ``ADD {a, b}`` is answered with ``ADD_RESULT {sum}`` (its handler takes the payload
  and returns the reply);
- RPC ``COUNT {to, delay_ms}`` sends one progress frame ``{n}`` per step, then replies
  ``COUNT_DONE {total}``. It can be aborted (``$ws:abort``) or run out of time
  (``meta.timeoutMs``); either way it stops counting.
"""

import asyncio
from typing import Any

import crosswire
from crosswire import EventContext, RpcContext, message, rpc

Echo = message("ECHO", {"text": str})
Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})
Count = rpc("COUNT", {"to": int, "delay_ms": int}, "COUNT_DONE", {"total": int})


def echo(ctx: EventContext[Any]) -> None:
    ctx.send(Echo, {"text": ctx.payload.text})


def add(payload: Any) -> dict[str, int]:
    return {"sum": payload.a + payload.b}


async def count(ctx: RpcContext[Any]) -> None:
    for n in range(1, ctx.payload.to + 1):
        await asyncio.sleep(ctx.payload.delay_ms / 1000)  # cancelled by abort or deadline
        ctx.progress({"n": n})
    ctx.reply({"total": ctx.payload.to})


def create_router() -> crosswire.Router:
    """A router with the three handlers (a router serves one App: make one per App)."""
    router = crosswire.Router().on(Echo, echo).rpc(Count, count)
    return router.rpc(Add, add, takes="payload")


app = crosswire.App(create_router())
