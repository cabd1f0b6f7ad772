"""A relay for the cluster test, run as ``crosswire run tests.apps.relay:app``.

A client subscribes to the rooms in its query string (``?room=a&room=b``); every text frame it
sends is ``{"room": ..., ...}`` and goes, as is, to every subscriber of that room on every
instance (the sender too, if subscribed). The bus is the Redis at ``CROSSWIRE_REDIS_URL``.
"""

from __future__ import annotations

import os

import orjson

from crosswire import App, Hub, Message, Peer, define_hooks
from crosswire.pubsub.redis import RedisBackend

hub = Hub(RedisBackend(os.environ["CROSSWIRE_REDIS_URL"]))


def open(peer: Peer) -> None:
    for room in peer.request.query.getlist("room"):
        peer.subscribe(room)


def message(peer: Peer, msg: Message) -> None:
    hub.publish(orjson.loads(msg.data)["room"], msg.text())


app = App(define_hooks(open=open, message=message), hub=hub)
