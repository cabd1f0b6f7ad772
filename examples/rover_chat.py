"""Seed 004's complete chat example, in crosswire: Rover's topics, verbs and dialect.

    crosswire run examples.rover_chat:app                     # one process
    CROSSWIRE_REDIS_URL=redis://127.0.0.1:6379/0 crosswire run examples.rover_chat:app --port 8001
    CROSSWIRE_REDIS_URL=redis://127.0.0.1:6379/0 crosswire run examples.rover_chat:app --port 8002

Two endpoints, as Rover's ``api.chat.ws`` and ``api.echo.ws``, speaking Rover's flat frames
``{"type": event, ...fields}``:

``/chat``
    ``{"type":"join","topic":"room","username":"ann"}`` joins the room (``join_ack``, with
    the joiner's connection ``id``), after ``user_joined`` (``user`` and ``id``, so that
    clients can address each other) went to the room; without a username, ``join_error``
    with reason ``Username required``. ``chat_message`` goes to the room with a
    ``timestamp`` (and a ``server_time``: the outbound map); ``typing`` becomes
    ``user_typing``; ``leave`` says ``user_left`` to the room, then ``leave_ack``;
    ``private_message`` goes to ``target_connection_id``; ``report_user`` sends ``kicked``
    (``Reported by moderator``) to ``reported_connection_id``. With the Redis URL, every
    instance is one chat: what is emitted or sent reaches clients on all of them.
``/echo``
    ``{"type":"message","text":"hi"}`` is answered ``{"type":"message","text":"hi"}``.
"""

import logging
import os
import time
from typing import Any

import crosswire
from crosswire import ConnectionContext, EventContext, JoinContext, LeaveContext, message
from crosswire.wire import ROVER

logger = logging.getLogger("examples.rover_chat")

ChatMessage = message("chat_message", {"user": str, "text": str})
ChatMessageOut = message("chat_message", {"user": str, "text": str, "timestamp": int})
Typing = message("typing", {"user": str})
UserTyping = message("user_typing", {"user": str})
UserJoined = message("user_joined", {"user": str, "id": str})
UserLeft = message("user_left", {"user": str | None})
PrivateMessage = message("private_message", {"target_connection_id": str, "from": str, "text": str})
PrivateMessageOut = message("private_message", {"from": str, "text": str})
ReportUser = message("report_user", {"reported_connection_id": str})
Kicked = message("kicked", {"reason": str})
Echo = message("message", {"text": str})


def join_room(ctx: JoinContext) -> None:
    username = ctx.payload.username
    if not username:
        ctx.reject("Username required", code="INVALID_ARGUMENT")
        return
    ctx.publish("room", UserJoined, {"user": username, "id": ctx.client_id})  # announce
    ctx.accept({"id": ctx.client_id})


def leave_room(ctx: LeaveContext) -> None:
    user = ctx.payload.get("user") if isinstance(ctx.payload, dict) else None
    ctx.publish("room", UserLeft, {"user": user})


def chat_message(ctx: EventContext[Any]) -> None:
    said = {"user": ctx.payload.user, "text": ctx.payload.text, "timestamp": int(time.time())}
    ctx.publish("room", ChatMessageOut, said)


def typing(ctx: EventContext[Any]) -> None:
    ctx.publish("room", UserTyping, {"user": ctx.payload.user})


def private_message(ctx: EventContext[Any]) -> None:
    note = {"from": getattr(ctx.payload, "from"), "text": ctx.payload.text}  # ("from": a keyword)
    ctx.send_to_client(ctx.payload.target_connection_id, PrivateMessageOut, note)


def report_user(ctx: EventContext[Any]) -> None:
    reported = ctx.payload.reported_connection_id
    ctx.send_to_client(reported, Kicked, {"reason": "Reported by moderator"})


def with_server_time(payload: Any) -> Any:
    """The seed's transform: every chat_message leaves with the server's time."""
    return {**payload, "server_time": int(time.time())}


def connected(ctx: ConnectionContext) -> None:
    logger.info("User connected: %s", ctx.client_id)


def disconnected(ctx: ConnectionContext) -> None:
    logger.info("User disconnected")


def create_chat_router() -> crosswire.Router:
    chat = crosswire.Router()
    chat.on_open(connected).on_close(disconnected)
    chat.topic("room", data={"username": str | None}).on_join(join_room).on_leave(leave_room)
    chat.on(ChatMessage, chat_message).on(Typing, typing)
    chat.on(PrivateMessage, private_message).on(ReportUser, report_user)
    chat.map(ChatMessageOut, with_server_time)
    return chat


def create_echo_router() -> crosswire.Router:
    return crosswire.Router().on(Echo, lambda ctx: ctx.send(Echo, {"text": ctx.payload.text}))


def make_hub() -> crosswire.Hub:
    """Alone, a process needs no bus; with CROSSWIRE_REDIS_URL, instances form one chat."""
    url = os.environ.get("CROSSWIRE_REDIS_URL")
    if not url:
        return crosswire.Hub()
    from crosswire.pubsub.redis import RedisBackend

    return crosswire.Hub(RedisBackend(url))


app = crosswire.App(
    endpoints=[
        crosswire.Endpoint("/chat", create_chat_router(), dialects=[ROVER]),
        crosswire.Endpoint("/echo", create_echo_router(), dialects=[ROVER]),
    ],
    hub=make_hub(),
)
