"""The core does no I/O: its modules import no event loop, sockets, servers or Redis."""

from __future__ import annotations

import ast
from pathlib import Path

import crosswire

SRC = Path(crosswire.__file__).parent

#: Modules that take values and return values (STYLE.md, rule 1).
CORE = (
    "errors.py",
    "limits.py",
    "http.py",
    "hooks.py",
    "rpc.py",
    "schema/__init__.py",
    "schema/codecs.py",
    "wire/__init__.py",
    "wire/canonical.py",
    "wire/events.py",
    "wire/dialect.py",
    "wire/rover.py",
    "wire/maps.py",
    "topics/__init__.py",
    "topics/routes.py",
    "endpoint.py",
    "pubsub/envelope.py",
    "pubsub/outage.py",
    "auth.py",
    "ratelimit/bucket.py",
    "client/backoff.py",
    "restarts.py",
    "client/frames.py",
    "client/dialects.py",
    "client/topics.py",
)

FORBIDDEN = {"asyncio", "socket", "selectors", "redis", "websockets", "aiohttp", "picows"}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_core_modules_import_no_io() -> None:
    for name in CORE:
        assert not imported_modules(SRC / name) & FORBIDDEN, name
