"""Exceptions raised by crosswire.

The tree::

    CrosswireError              root: catch this to catch anything crosswire raises
     └── ConfigurationError     hooks, limits or server options that cannot work; raised at
                                startup, never while serving

Errors raised *inside* user hooks are never wrapped: they reach the ``error`` hook unchanged.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "CrosswireError"]


class CrosswireError(Exception):
    """Root of every exception crosswire raises."""


class ConfigurationError(CrosswireError):
    """Hooks, limits or server options that cannot work, detected before serving."""
