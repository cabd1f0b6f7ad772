"""crosswire inside FastAPI: a WebSocket route beside the HTTP routes, one lifespan for both.

    uvicorn examples.fastapi_app:api

The typed echo router of ``examples/echo.py`` answers on ``ws://127.0.0.1:8000/ws``; FastAPI
answers ``GET /health``. FastAPI does not pass its lifespan to the routes it serves, so the
lifespan starts and stops the crosswire App itself: ``startup()`` connects the App's bus (if it
has one) and lets it serve again after an earlier ``shutdown()``, which closes every
connection with 1001.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import WebSocketRoute

import crosswire
from examples.echo import create_router

ws_app = crosswire.App(create_router())


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    await ws_app.startup()
    yield
    await ws_app.shutdown()


# A WebSocketRoute serves exactly /ws; api.mount("/ws", ...) would serve /ws/ and below.
api = FastAPI(lifespan=lifespan, routes=[WebSocketRoute("/ws", crosswire.asgi(ws_app))])


@api.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
