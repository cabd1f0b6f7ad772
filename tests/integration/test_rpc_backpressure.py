"""Progress frames under real backpressure: a client that stops reading fills the kernel's
buffers, then the server's; from then on ``ctx.progress`` drops frames (and says so) while the
terminal reply still goes out, and the connection carries on once the client reads again."""

from __future__ import annotations

from typing import Any

import orjson

from crosswire import App, Router, RpcContext, rpc
from tests.support import RawClient

Flood = rpc("FLOOD", {"size": int, "most": int}, "FLOOD_DONE", {"sent": int, "dropped": int})
Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})

#: Enough progress to fill the kernel's buffers on both ends of a loopback connection many
#: times over (16 KiB frames: 10,000 of them are 160 MB).
MOST = 10_000


def flood_router() -> Router:
    def flood(ctx: RpcContext[Any]) -> None:
        chunk = "x" * ctx.payload.size
        sent = dropped = 0
        # Nothing drains while this runs: once the buffer is past its high-water mark, every
        # later progress frame is dropped.
        while dropped < 10 and sent < ctx.payload.most:
            if ctx.progress({"n": sent, "chunk": chunk}):
                sent += 1
            else:
                dropped += 1
        ctx.reply({"sent": sent, "dropped": dropped})

    router = Router()
    router.rpc(Flood, flood)
    router.rpc(Add, lambda ctx: ctx.reply({"sum": ctx.payload.a + ctx.payload.b}))
    return router


def request(type: str, cid: str, payload: Any) -> bytes:
    frame = {"type": type, "meta": {"correlationId": cid}, "payload": payload}
    return orjson.dumps(frame)


async def test_progress_is_dropped_under_backpressure_and_the_reply_is_not(
    kind: str, start_server: Any
) -> None:
    served = await start_server(App(flood_router()), kind)
    client = await RawClient.connect(served.url)
    try:
        client.protocol.send_text(request("FLOOD", "f", {"size": 16 * 1024, "most": MOST}))
        client.flush()
        progress: list[int] = []
        while True:  # only now does the client read
            (raw,) = await client.messages(1)
            frame = orjson.loads(raw)
            if frame["type"] != "$ws:rpc-progress":
                break
            progress.append(frame["payload"]["n"])
        assert frame["type"] == "FLOOD_DONE" and frame["meta"] == {"correlationId": "f"}
        sent, dropped = frame["payload"]["sent"], frame["payload"]["dropped"]
        assert dropped == 10 and 0 < sent < MOST  # the buffer filled before the end
        assert progress == list(range(sent))  # every frame that was accepted arrived, in order

        client.protocol.send_text(request("ADD", "a", {"a": 2, "b": 3}))
        client.flush()
        (raw,) = await client.messages(1)
        assert orjson.loads(raw)["payload"] == {"sum": 5}  # the connection carries on

        client.protocol.send_text(request("FLOOD", "g", {"size": 16, "most": 100}))  # 5 KB
        client.flush()
        frames = [orjson.loads(raw) for raw in await client.messages(101)]
        assert frames[-1]["payload"] == {"sent": 100, "dropped": 0}  # drained: none dropped
        assert [f["payload"]["n"] for f in frames[:-1]] == list(range(100))
    finally:
        client.close()
