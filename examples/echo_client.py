"""The typed client against examples/echo.py: an event, an RPC, and an RPC with progress.

    crosswire run examples.echo:app --port 8000
    python -m examples.echo_client ws://127.0.0.1:8000/

The schemas are the server's own (``examples.echo``): both ends validate the same messages.
"""

import asyncio
import sys

from crosswire.client import Client, Frame, Reconnect
from examples.echo import Add, Count, Echo


async def main(url: str) -> list[str]:
    """Talk to the echo server at ``url``; returns (and prints) what happened."""
    lines: list[str] = []
    client = Client(url, reconnect=Reconnect(max_attempts=3))
    echoed = asyncio.Event()

    def on_echo(frame: Frame) -> None:
        lines.append(f"echo: {frame.payload.text}")  # frame.payload is typed: an Echo payload
        echoed.set()

    client.on(Echo, on_echo)  # before connecting: nothing the server sends is missed
    async with client:
        await client.send(Echo, {"text": "hello"})
        await asyncio.wait_for(echoed.wait(), 5)
        reply = await client.request(Add, {"a": 1, "b": 2})
        lines.append(f"1 + 2 = {reply.payload.sum}")
        done = await client.request(
            Count,
            {"to": 3, "delay_ms": 10},
            on_progress=lambda step: lines.append(f"counted {step['n']}"),
        )
        lines.append(f"counted to {done.payload.total}")
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/"))
