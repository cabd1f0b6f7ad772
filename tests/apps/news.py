"""Topics with history on the Redis at ``CROSSWIRE_REDIS_URL``, for the instance-kill test:
run as ``crosswire run tests.apps.news:app``. ``news:{id}`` keeps its last 10,000 events; the
event ``PUB {"topic", "n"}`` publishes ``NEWS {"n"}`` to that topic."""

from __future__ import annotations

import os
from typing import Any

from crosswire import App, EventContext, History, Hub, Router, message
from crosswire.pubsub.redis import RedisBackend

News = message("NEWS", {"n": int})
Pub = message("PUB", {"topic": str, "n": int})

router = Router()
router.topic("news:{id}", history=History(size=10_000, ttl=None))


def publish(ctx: EventContext[Any]) -> None:
    ctx.publish(ctx.payload.topic, News, {"n": ctx.payload.n})


router.on(Pub, publish)
app = App(router, hub=Hub(RedisBackend(os.environ["CROSSWIRE_REDIS_URL"])))
