"""Benchmark servers: raw websockets / aiohttp / picows / uvicorn / hypercorn, and crosswire
on each.

Run one per process: ``python bench/servers.py NAME`` (NAME in :data:`SERVERS`). The server
listens on 127.0.0.1 with a free port, prints that port on stdout when ready and runs until
SIGTERM/SIGINT. ``bench/run.py`` starts them pinned to one core with ``taskset -c 0``.

The raw and crosswire servers speak the same protocol (text messages only):

* ``"sub"``: subscribe this connection to topic ``"b"`` (no reply);
* ``"pub:..."``: send the whole message to every subscriber of ``"b"`` (the publisher is not one);
* anything else: echo it back to the sender.

Every server keeps connections alive as crosswire does by default (a ping after 20 s idle):
websockets by its own default, raw aiohttp, picows and uvicorn told to, so that memory and
CPU per connection compare like for like; and raw servers on asyncio's transports read 64 KiB
per ``recv``, as crosswire's connections do (:func:`raw_reads_like_crosswire`). Raw uvicorn
is a bare ASGI app on the WebSocket protocol crosswire's uvicorn adapter subclasses
(``websockets-sansio``); raw hypercorn is the same app on hypercorn's own WebSocket stream
(crosswire's mends it, ``adapters/_hypercorn.py``), without pings, as crosswire configures
hypercorn (it sends pings but never checks the pongs).

The redis servers are the crosswire ones with a Hub on the Redis at ``BENCH_REDIS_URL``: a
publish reaches the subscribers of every instance. Their ``"probe"`` is answered once the
subscriptions made before it are in effect on Redis.

The typed servers serve a crosswire Router, in the canonical dialect: the RPC ``ECHO {text}``
answered by ``ECHO_RESULT {text}``, with pydantic models validating both ways (issue 3's
benchmark); ``struct-picows`` is the same App with its payloads declared as the README does
(``{"text": str}`` mappings: msgspec Structs, which the router's fast lane decodes with the
envelope); ``payload-picows`` is ``struct-picows`` with its ``ECHO`` handler taking the payload
and returning the reply (``router.rpc(..., takes="payload")``), which runs without a context.
For typed
fan-out, the RPC ``SUB`` (no payload) subscribes the connection to ``"b"`` and answers
``SUBBED`` once it has, and the event ``PUB {text}`` is published to ``"b"`` as ``NEWS {text}``
(the publisher excluded). The socketio server answers the socket.io event ``echo`` through its
ack (python-socketio on aiohttp).

``floor-picows`` is no framework: the least a typed RPC costs in Python on picows, the floor
under every typed row. One msgspec call decodes the ``ECHO`` frame and checks its
``{"text": str}`` payload, a Python handler makes the ``ECHO_RESULT`` payload, and the reply
is joined from a prefix, the correlation id and msgspec's JSON. Nothing else: no other
message types, no errors for bad frames (it drops them), no per-connection state.

Before its port, a server that imported crosswire prints ``crosswire <path of its
__init__.py>``: ``bench/run.py --against REV`` runs this file with another revision's ``src/``
on ``PYTHONPATH`` and checks, from that line, which code the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

SERVERS = (
    "raw-websockets",
    "raw-aiohttp",
    "raw-picows",
    "raw-uvicorn",
    "raw-hypercorn",
    "crosswire-websockets",
    "crosswire-aiohttp",
    "crosswire-picows",
    "crosswire-uvicorn",
    "crosswire-hypercorn",
    "redis-websockets",
    "redis-aiohttp",
    "redis-picows",
    "redis-uvicorn",
    "redis-hypercorn",
    "typed-websockets",
    "typed-picows",
    "struct-picows",
    "payload-picows",
    "floor-picows",
    "socketio-aiohttp",
)

HOST = "127.0.0.1"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


Started = tuple[int, Callable[[], Awaitable[None]]]  # (port, stop)


# -- raw websockets ----------------------------------------------------------------------------


async def raw_websockets() -> Started:
    import websockets
    from websockets.asyncio.server import ServerConnection, serve

    subs: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        try:
            async for m in ws:
                if m == "sub":
                    subs.add(ws)
                elif isinstance(m, str) and m.startswith("pub:"):
                    websockets.broadcast(subs, m)
                else:
                    await ws.send(m)
        except websockets.ConnectionClosed:
            pass
        finally:
            subs.discard(ws)

    server = await serve(handler, HOST, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return port, stop


# -- raw aiohttp -------------------------------------------------------------------------------


async def raw_aiohttp() -> Started:
    from aiohttp import WSMsgType, web

    subs: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0)  # crosswire's default keepalive: like for like
        await ws.prepare(request)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                data = msg.data
                if data == "sub":
                    subs.add(ws)
                elif data.startswith("pub:"):
                    # Fan-out: one ``await send_str`` per subscriber, in a plain loop. Each
                    # call writes the frame to the transport synchronously and only suspends
                    # when that socket's buffer is over aiohttp's limit (backpressure), so
                    # this creates no task per subscriber (asyncio.gather would) and is the
                    # fastest idiomatic broadcast in aiohttp.
                    for sub in tuple(subs):
                        if not sub.closed:
                            await sub.send_str(data)
                else:
                    await ws.send_str(data)
        finally:
            subs.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]

    async def stop() -> None:
        await runner.cleanup()

    return port, stop


def raw_asgi_app() -> Callable[..., Awaitable[None]]:
    """The raw ASGI app of raw uvicorn and raw hypercorn: the protocol above, nothing else."""
    subs: set[Callable[[dict[str, Any]], Awaitable[None]]] = set()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        try:
            while True:
                event = await receive()
                if event["type"] == "websocket.disconnect":
                    break
                text = event.get("text")
                if text is None:
                    continue
                if text == "sub":
                    subs.add(send)
                elif text.startswith("pub:"):
                    # As raw aiohttp: one awaited send per subscriber, in a plain loop.
                    for sub in tuple(subs):
                        await sub({"type": "websocket.send", "text": text})
                else:
                    await send({"type": "websocket.send", "text": text})
        finally:
            subs.discard(send)

    return app


async def raw_uvicorn() -> Started:
    import socket

    import uvicorn

    app = raw_asgi_app()

    config = uvicorn.Config(
        app,
        ws="websockets-sansio",  # the protocol crosswire's uvicorn adapter builds on
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        ws_ping_interval=20.0,  # crosswire's default keepalive: like for like
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # main() owns the signals
            yield

    server = Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((HOST, 0))
    sock.listen(1024)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)

    async def stop() -> None:
        server.should_exit = True
        await task

    return sock.getsockname()[1], stop


async def raw_hypercorn() -> Started:
    """The raw ASGI app on hypercorn, configured as crosswire configures it (server.py's
    ``_start_hypercorn``: no pings, no access log), without crosswire's mended WSStream."""
    import socket

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((HOST, 0))
    sock.listen(1024)
    config = Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # (hypercorn closes what it is given)
    config.websocket_ping_interval = None
    config.accesslog = None
    errors = logging.getLogger("hypercorn.error")  # (its default logs "Running on" at INFO)
    errors.setLevel(logging.WARNING)
    config.errorlog = errors
    config.backlog = 1024
    shutdown = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        serve(raw_asgi_app(), config, shutdown_trigger=shutdown.wait, mode="asgi")
    )
    await asyncio.sleep(0)  # (the socket listens: the kernel queues connections meanwhile)
    if task.done():
        task.result()

    async def stop() -> None:
        shutdown.set()
        await task
        sock.close()

    return sock.getsockname()[1], stop


# -- the floor of a typed RPC on picows -----------------------------------------------------------


def floor_listener() -> Any:
    """A picows listener that answers ``ECHO`` with ``ECHO_RESULT`` as directly as Python can
    (see the module's docs): the class, to make one per connection."""
    import msgspec
    import orjson
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    # (defstruct: this module's annotations are strings, which msgspec resolves in its globals)
    Text = msgspec.defstruct("Text", [("text", str)], forbid_unknown_fields=True)
    Meta = msgspec.defstruct("Meta", [("correlationId", str)])
    Request = msgspec.defstruct(
        "Request", [("meta", Meta), ("payload", Text)], tag_field="type", tag="ECHO"
    )
    decode = msgspec.json.Decoder(Request).decode
    encode = msgspec.json.Encoder().encode
    prefix = b'{"type":"ECHO_RESULT","meta":{"correlationId":'
    TEXT = WSMsgType.TEXT

    def handle(payload: Any) -> Any:
        return Text(text=payload.text)

    class Floor(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not TEXT:
                return
            try:
                request: Any = decode(frame.get_payload_as_bytes())
            except msgspec.ValidationError:
                return
            reply = handle(request.payload)
            cid = orjson.dumps(request.meta.correlationId)
            transport.send(TEXT, prefix + cid + b'},"payload":' + encode(reply) + b"}")

    return Floor


async def floor_picows() -> Started:
    return await picows_serving(floor_listener())


# -- raw picows --------------------------------------------------------------------------------


async def raw_picows() -> Started:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    subs: set[WSTransport] = set()
    TEXT, CLOSE = WSMsgType.TEXT, WSMsgType.CLOSE

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind is TEXT:
                data = frame.get_payload_as_bytes()
                if data == b"sub":
                    subs.add(transport)
                elif data.startswith(b"pub:"):
                    for t in subs:
                        t.send(TEXT, data)
                else:
                    transport.send(kind, data)
            elif kind is CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            else:
                transport.send(kind, frame.get_payload_as_bytes())

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            subs.discard(transport)

    return await picows_serving(Echo)


async def picows_serving(listener: Callable[[], Any]) -> Started:
    """A picows server making one ``listener()`` per connection."""
    from picows import ws_create_server

    # Keepalive as crosswire runs it by default (Limits.ping_interval = 20 s): like for like.
    server = await ws_create_server(
        lambda _request: listener(),
        HOST,
        0,
        backlog=1024,
        enable_auto_ping=True,
        auto_ping_idle_timeout=20.0,
        auto_ping_reply_timeout=20.0,
    )
    port = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return port, stop


# -- crosswire ---------------------------------------------------------------------------------


class Counting:
    """A crosswire transport that sends nothing and counts what it is asked to send: a peer's
    end of the wire for the in-process measures (``bench/hotpath.py``, ``bench/scaling.py``),
    whose time is then crosswire's own."""

    cork = None

    def __init__(self) -> None:
        self.sent = 0

    def bind(self, peer: object) -> None:
        pass

    def send_text(self, payload: object) -> None:
        self.sent += 1

    def send_binary(self, payload: object) -> None:
        self.sent += 1

    def buffered_amount(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def limits() -> Any:
    """crosswire's default limits; ``BENCH_COALESCE=0`` (``run.py --no-coalesce``) turns write
    coalescing off, so that every write leaves at once as in the raw servers."""
    import crosswire

    return crosswire.Limits(coalesce_writes=os.environ.get("BENCH_COALESCE") != "0")


def crosswire_app(hub: Any = None) -> object:
    """The hooks app; with a ``hub`` on a bus, ``"probe"`` waits for the subscriptions."""
    import crosswire

    tasks: set[asyncio.Task[None]] = set()

    async def answer_when_subscribed(peer: crosswire.Peer, text: str) -> None:
        await hub.flush()
        peer.send(text)

    def message(peer: crosswire.Peer, msg: crosswire.Message) -> None:
        text = msg.text()
        if text == "sub":
            peer.subscribe("b")
        elif text.startswith("pub:"):
            peer.publish("b", text)
        elif text == "probe" and hub is not None:
            task = asyncio.get_running_loop().create_task(answer_when_subscribed(peer, text))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            peer.send(text)

    return crosswire.App(crosswire.define_hooks(message=message), hub=hub, limits=limits())


def crosswire_on(name: str) -> Callable[[], Awaitable[Started]]:
    async def start() -> Started:
        import crosswire

        srv = await crosswire.start(crosswire_app(), host=HOST, port=0, server=name)  # type: ignore[arg-type]
        return srv.port, srv.aclose

    return start


def redis_on(name: str) -> Callable[[], Awaitable[Started]]:
    async def start() -> Started:
        import crosswire
        from crosswire.pubsub.redis import RedisBackend

        hub = crosswire.Hub(RedisBackend(os.environ["BENCH_REDIS_URL"]))
        app = crosswire_app(hub)
        srv = await crosswire.start(app, host=HOST, port=0, server=name)  # type: ignore[arg-type]
        return srv.port, srv.aclose

    return start


def typed_app(models: str = "pydantic", takes: str = "ctx") -> object:
    """The typed App: ``ECHO {text}`` answered by ``ECHO_RESULT {text}``, its payloads
    pydantic models or, with ``models="struct"``, declared as the README does (``{"text":
    str}``: msgspec Structs); with ``takes="payload"``, its ``ECHO`` handler takes the
    payload and returns the reply."""
    import crosswire

    if models == "pydantic":
        from pydantic import BaseModel

        class EchoIn(BaseModel):
            text: str

        class EchoOut(BaseModel):
            text: str

        echo = crosswire.message("ECHO", EchoIn, response=crosswire.message("ECHO_RESULT", EchoOut))
        out: Any = EchoOut
    else:
        echo = crosswire.message(
            "ECHO", {"text": str}, response=crosswire.message("ECHO_RESULT", {"text": str})
        )
        out = echo.response.payload.target  # type: ignore[union-attr]

    sub = crosswire.message("SUB", response=crosswire.message("SUBBED"))
    pub = crosswire.message("PUB", {"text": str})
    news = crosswire.message("NEWS", {"text": str})

    def handle(ctx: crosswire.RpcContext[Any]) -> None:
        ctx.reply(out(text=ctx.payload.text))

    def subscribe(ctx: crosswire.RpcContext[None]) -> None:
        ctx.subscribe("b")
        ctx.reply()  # the client's probe: its subscription is in place

    def publish(ctx: crosswire.EventContext[Any]) -> None:
        ctx.publish("b", news, {"text": ctx.payload.text}, exclude_self=True)

    def answer(payload: Any) -> Any:
        return out(text=payload.text)

    router = crosswire.Router()
    if takes == "payload":
        router.rpc(echo, answer, takes="payload")
    else:
        router.rpc(echo, handle)
    router.rpc(sub, subscribe).on(pub, publish)
    return crosswire.App(router, limits=limits())


def typed_on(
    name: str, models: str = "pydantic", takes: str = "ctx"
) -> Callable[[], Awaitable[Started]]:
    async def start() -> Started:
        import crosswire

        app = typed_app(models, takes)
        srv = await crosswire.start(app, host=HOST, port=0, server=name)  # type: ignore[arg-type]
        return srv.port, srv.aclose

    return start


async def socketio_aiohttp() -> Started:
    import socketio  # type: ignore[import-untyped]
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)

    @sio.on("echo")  # type: ignore[untyped-decorator]
    async def echo(sid: str, text: str) -> str:
        return text  # answered through the client's ack

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]

    async def stop() -> None:
        await runner.cleanup()

    return port, stop


STARTERS: dict[str, Callable[[], Awaitable[Started]]] = {
    "raw-websockets": raw_websockets,
    "raw-aiohttp": raw_aiohttp,
    "raw-picows": raw_picows,
    "raw-uvicorn": raw_uvicorn,
    "raw-hypercorn": raw_hypercorn,
    "crosswire-websockets": crosswire_on("websockets"),
    "crosswire-aiohttp": crosswire_on("aiohttp"),
    "crosswire-picows": crosswire_on("picows"),
    "crosswire-uvicorn": crosswire_on("uvicorn"),
    "crosswire-hypercorn": crosswire_on("hypercorn"),
    "redis-websockets": redis_on("websockets"),
    "redis-aiohttp": redis_on("aiohttp"),
    "redis-picows": redis_on("picows"),
    "redis-uvicorn": redis_on("uvicorn"),
    "redis-hypercorn": redis_on("hypercorn"),
    "typed-websockets": typed_on("websockets"),
    "typed-picows": typed_on("picows"),
    "struct-picows": typed_on("picows", "struct"),
    "payload-picows": typed_on("picows", "struct", "payload"),
    "floor-picows": floor_picows,
    "socketio-aiohttp": socketio_aiohttp,
}


def raw_reads_like_crosswire() -> None:
    """Raw servers on asyncio's transports read 64 KiB per ``recv``, as crosswire's
    connections do (``crosswire/adapters/_reads.py``): asyncio's 256 KiB costs an ``mmap``
    per read in some processes and not in others, which would be measured as crosswire's
    doing. ``BENCH_RAW_READS=default`` (``run.py --raw-default-reads``) keeps asyncio's."""
    if os.environ.get("BENCH_RAW_READS") != "default":
        from asyncio import selector_events

        selector_events._SelectorSocketTransport.max_size = 64 * 1024  # type: ignore[attr-defined]


async def main(name: str) -> None:
    if name.startswith("raw-"):
        raw_reads_like_crosswire()
    port, stop = await STARTERS[name]()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if (module := sys.modules.get("crosswire")) is not None:
        print("crosswire", module.__file__)  # which code this server runs (run.py checks it)
    print(port, flush=True)
    await done.wait()
    with contextlib.suppress(Exception):  # shutting down a benchmark server: nothing to save
        await asyncio.wait_for(stop(), 5)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in STARTERS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(SERVERS)}}}")
    raise_fd_limit()
    # Profiling hook for bench/run.py --profile: cProfile the whole server process.
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(main(sys.argv[1]))
        finally:
            profiler.disable()
            profiler.dump_stats(os.environ["BENCH_PROFILE"])
    else:
        asyncio.run(main(sys.argv[1]))
