"""An echo server in a process of its own, for tests that measure the server's memory.

    python -m tests.apps.echo SERVER [MAX_MESSAGE_SIZE]

It prints ``url ws://127.0.0.1:PORT maxrss KB`` once listening (the process's peak resident
size so far), serves until its standard input closes, then prints ``maxrss KB`` again and
exits: the peak over the whole run, whatever the server freed since.
"""

from __future__ import annotations

import asyncio
import resource
import sys

import crosswire
from crosswire import App, Limits, Message, Peer, define_hooks


def maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def message(peer: Peer, msg: Message) -> None:
    peer.send(msg.raw)


async def main(server: str, max_message_size: int) -> None:
    app = App(define_hooks(message=message), limits=Limits(max_message_size=max_message_size))
    running = await crosswire.start(app, server=server)  # type: ignore[arg-type]
    print(f"url {running.url} maxrss {maxrss_kb()}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await running.aclose()
    print(f"maxrss {maxrss_kb()}", flush=True)


if __name__ == "__main__":
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1024 * 1024
    asyncio.run(main(sys.argv[1], size))
