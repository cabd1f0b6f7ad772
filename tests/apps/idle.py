"""A server for many idle connections, in a process of its own, so that a test can measure the
server's memory without its clients in it.

    python -m tests.apps.idle KIND MAX_CONNECTIONS

``KIND`` is one of tests.support.SERVER_KINDS. It prints ``url WS_URL`` once listening and
serves until its standard input closes. Every connection joins the topic ``all`` when it
opens; a client that sends ``count`` is told how many connections are open, one that sends
``publish`` has ``news`` published to ``all`` and is then told how many it reached
(``reached N``); anything else is echoed.
"""

from __future__ import annotations

import asyncio
import sys

from crosswire import App, Limits, Message, Peer, define_hooks
from tests.support import serve_on


def build(max_connections: int) -> App:
    def open_(peer: Peer) -> None:
        peer.subscribe("all")

    def message(peer: Peer, msg: Message) -> None:
        if msg.raw == "count":
            peer.send(str(len(app.peers)))
        elif msg.raw == "publish":
            peer.send(f"reached {app.publish('all', 'news')}")
        else:
            peer.send(msg.raw)

    app = App(
        define_hooks(open=open_, message=message),
        limits=Limits(max_connections=max_connections),
    )
    return app


async def main(kind: str, max_connections: int) -> None:
    served = await serve_on(build(max_connections), kind)
    print(f"url {served.url}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await served.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
