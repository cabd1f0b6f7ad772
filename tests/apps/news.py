"""Topics with history and presence on the Redis at ``CROSSWIRE_REDIS_URL`` (or on the Redis
Cluster of which ``CROSSWIRE_REDIS_CLUSTER_URL`` names a node), for the instance-kill tests:
run as ``crosswire run tests.apps.news:app``. ``news:{id}`` keeps its last 10,000 events; the
event ``PUB {"topic", "n"}`` publishes ``NEWS {"n"}`` to that topic. ``room:{id}`` keeps
presence (``{"name"}`` from the join's data), with a heartbeat of 0.2 s and a TTL of 3 s, so
that a killed instance's members expire quickly."""

from __future__ import annotations

import os
from typing import Any

from crosswire import App, EventContext, History, Hub, JoinContext, Router, message
from crosswire.pubsub.redis import RedisBackend
from crosswire.pubsub.redis_cluster import RedisClusterBackend

News = message("NEWS", {"n": int})
Pub = message("PUB", {"topic": str, "n": int})

router = Router()
router.topic("news:{id}", history=History(size=10_000, ttl=None))


def publish(ctx: EventContext[Any]) -> None:
    ctx.publish(ctx.payload.topic, News, {"n": ctx.payload.n})


def join_room(ctx: JoinContext) -> None:
    ctx.accept(presence={"name": (ctx.payload or {}).get("name", "?")})


router.on(Pub, publish)
router.topic("room:{id}", presence=True).on_join(join_room)
backend: RedisBackend | RedisClusterBackend
if "CROSSWIRE_REDIS_CLUSTER_URL" in os.environ:
    backend = RedisClusterBackend(
        os.environ["CROSSWIRE_REDIS_CLUSTER_URL"], presence_heartbeat=0.2, presence_ttl=3.0
    )
else:
    url = os.environ["CROSSWIRE_REDIS_URL"]
    backend = RedisBackend(url, presence_heartbeat=0.2, presence_ttl=3.0)
app = App(router, hub=Hub(backend))
