"""The public facade and every module's ``__all__`` stay honest."""

from __future__ import annotations

import importlib
import pkgutil

import crosswire


def test_facade_all_is_sorted_and_every_name_exists() -> None:
    assert crosswire.__all__ == sorted(crosswire.__all__)
    for name in crosswire.__all__:
        assert hasattr(crosswire, name), name


def test_every_module_declares_all_and_it_is_true() -> None:
    for info in pkgutil.walk_packages(crosswire.__path__, "crosswire."):
        if info.name == "crosswire.__main__":
            continue
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{info.name} has no __all__"
        for name in exported:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name!r}"
