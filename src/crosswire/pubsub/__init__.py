"""Pub/sub: the :class:`Hub` owns topic subscriptions and local fan-out."""

from .hub import Hub

__all__ = ["Hub"]
