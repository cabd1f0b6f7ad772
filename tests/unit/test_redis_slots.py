"""Hash slots without a cluster: which tag puts a key in a channel's slot, the slot map read
from a CLUSTER SLOTS reply, and the one slot of a namespace's presence keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crosswire.pubsub.redis_presence import RedisPresence
from crosswire.pubsub.redis_slots import SLOTS, SlotMap, hash_tag, slot_of


@pytest.mark.parametrize(
    ("channel", "tag", "whole"),
    [
        ("ws:room:lobby", "ws:room:lobby", True),  # no tag: all of it
        ("ws:room:odd{tag}name", "tag", False),  # its own tag
        ("ws:room:a{b", "ws:room:a{b", True),  # an open brace alone is no tag
        ("ws:room:{}x", None, False),  # an empty tag hashes all: a brace to avoid
        ("ws:room:a}b", None, False),
    ],
)
def test_a_tag_puts_keys_in_the_slot_of_any_channel(
    channel: str, tag: str | None, whole: bool
) -> None:
    found, is_whole = hash_tag(channel)
    if tag is not None:
        assert found == tag
    assert "}" not in found
    assert is_whole == whole
    assert slot_of(f"ws:history:{{{found}}}:x") == slot_of(channel)


def test_the_slot_map_names_each_slots_master_and_every_node() -> None:
    reply = [
        [0, 8191, [b"10.0.0.1", 7000, b"id1", []], [b"10.0.0.4", 7003, b"id4", []]],
        [8192, 16383, [b"", 7001, b"id2", []]],  # no host announced: the one asked
    ]
    slots = SlotMap(reply, default_host="10.0.0.9")
    assert slots.complete
    assert slots.masters == [("10.0.0.1", 7000), ("10.0.0.9", 7001)]
    assert slots.nodes == [("10.0.0.1", 7000), ("10.0.0.9", 7001), ("10.0.0.4", 7003)]
    low = next(f"k{i}" for i in range(SLOTS) if slot_of(f"k{i}") < 8192)
    assert slots.owner(low) == ("10.0.0.1", 7000)
    assert not SlotMap(reply[:1], default_host="h").complete


NAMES = st.text(alphabet=st.sampled_from("ab:{}x"), min_size=1, max_size=12) | st.text(min_size=1)


@given(namespace=NAMES, topic=NAMES, instance=NAMES)
def test_a_cluster_presence_store_keeps_every_key_of_its_namespace_in_one_slot(
    namespace: str, topic: str, instance: str
) -> None:
    """RedisPresence(cluster=True) runs scripts that reach a topic's hash, every instance's key
    and topic set, and the registry: Redis Cluster runs them only if all share one slot,
    whatever braces the namespace, topics and instances hold. (No I/O: the store connects on
    first use.)"""
    store = RedisPresence(
        "redis://127.0.0.1:7000", instance=instance, namespace=namespace, cluster=True
    )
    keys = [
        store._presence_prefix + topic,
        store._instance_prefix + instance,
        store._topics_prefix + instance,
        store._registry,
        store._key,
        store._topics_key,
    ]
    assert len({slot_of(key) for key in keys}) == 1
    other = RedisPresence("redis://127.0.0.1:7000", instance=instance, namespace=namespace)
    assert other._presence_prefix == f"{namespace}:presence:"  # one Redis: the names as before
