"""A typed router on every dialect, with in-band authentication, for the tests that look for
secrets in the logs (tests/integration/test_logs.py), in process and under ``crosswire run``:

    crosswire run tests.apps.secret_router:app --log-level debug

``/ws/`` speaks the canonical dialect, the events dialect and Rover's (``?dialect=``);
``/ws/auth`` the same behind ``router.authenticate``, whose check refuses every credential, and
raises when they hold ``"raise": true``. (Both paths are under ``/ws``, where the tests mount
an App in Starlette.)
"""

from __future__ import annotations

from typing import Any

import crosswire
from crosswire import EventContext, RpcContext, message, rpc
from crosswire.auth import Identity
from crosswire.router.context import AuthContext
from crosswire.wire import CANONICAL, EVENTS, ROVER, Dialect

Echo = message("ECHO", {"text": str})
#: Its handler raises (the exception's text is crosswire's to keep from the client).
Fail = rpc("FAIL", {"text": str}, "FAIL_RESULT", {"ok": bool})
#: Its handler returns without answering (crosswire warns about it).
Silent = rpc("SILENT", {"text": str}, "SILENT_RESULT", {"ok": bool})

#: What ``router.max_payload_bytes`` is here: a frame past it closes with 1009.
MAX_PAYLOAD = 512
DIALECTS: list[Dialect] = [CANONICAL, EVENTS, ROVER]


def echo(ctx: EventContext[Any]) -> None:
    ctx.send(Echo, {"text": "echoed"})  # (not the text: a secret is in no answer either)


def fail(ctx: RpcContext[Any]) -> None:
    raise RuntimeError("the handler failed")


def silent(ctx: RpcContext[Any]) -> None:
    pass


def check(ctx: AuthContext) -> Identity | None:
    if isinstance(ctx.payload, dict) and ctx.payload.get("raise"):
        raise RuntimeError("the check failed")
    return None


def router(*, authenticate: bool = False) -> crosswire.Router:
    made = (
        crosswire.Router(max_payload_bytes=MAX_PAYLOAD)
        .on(Echo, echo)
        .rpc(Fail, fail)
        .rpc(Silent, silent)
    )
    return made.authenticate(check) if authenticate else made


def create_app() -> crosswire.App:
    return crosswire.App(
        endpoints=[
            crosswire.Endpoint("/ws/", router(), dialects=DIALECTS),
            crosswire.Endpoint("/ws/auth", router(authenticate=True), dialects=DIALECTS),
        ]
    )


app = create_app()
