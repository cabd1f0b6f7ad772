"""Replaying fixture files (frames in, frames expected out) and checking frames with WS-Kit."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

import crosswire
from crosswire.testing import TestClient
from tests.support import node_commands

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
WSKIT = ROOT / "tests" / "wskit"


def fixture_files(dialect: str) -> list[Path]:
    return sorted((FIXTURES / dialect).glob("*.json"))


def load_fixture(path: Path) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads(path.read_text())
    return fixture


def load_router(target: str) -> crosswire.Router:
    module, _, attr = target.partition(":")
    router: crosswire.Router = getattr(importlib.import_module(module), attr)()
    return router


async def replay(path: Path) -> tuple[crosswire.Router, list[dict[str, Any]]]:
    """Run one fixture against a fresh router through the in-process test client; returns the
    router and every frame the server sent. Each ``expect`` step must match the next frame
    (see :func:`matches`), and nothing may be left unread."""
    fixture = load_fixture(path)
    router = load_router(fixture["router"])
    async with TestClient(router).connect() as conn:

        async def receive() -> dict[str, Any]:
            frame = await conn.receive()
            return frame.json if frame.json is not None else {"raw": frame.raw}

        received = await run_steps(path, fixture, conn.send_raw, receive)
        leftover = conn.pending
        if leftover:
            raise AssertionError(f"{path.name}: unexpected frames {[f.json for f in leftover]}")
    return router, received


async def replay_over(path: Path, ws: Any) -> list[dict[str, Any]]:
    """The same steps over a real socket: ``ws`` is a websockets client connected to a server
    of an App of the fixture's router."""

    async def send(text: str) -> None:
        await ws.send(text)

    async def receive() -> dict[str, Any]:
        got: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        return got

    return await run_steps(path, load_fixture(path), send, receive)


async def run_steps(
    path: Path,
    fixture: dict[str, Any],
    send: Callable[[str], Awaitable[None]],
    receive: Callable[[], Awaitable[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Send each ``send``/``send_raw`` step, check each ``expect`` step against the next frame;
    returns every frame received."""
    received: list[dict[str, Any]] = []
    for index, step in enumerate(fixture["steps"]):
        if "send" in step:
            await send(orjson.dumps(step["send"]).decode())
        elif "send_raw" in step:
            await send(step["send_raw"])
        else:
            got = await receive()
            received.append(got)
            if not matches(step["expect"], got):
                raise AssertionError(
                    f"{path.name} step {index}: expected {step['expect']}, got {got}"
                )
    return received


def matches(expected: Any, got: Any) -> bool:
    """Exact equality, except placeholders: ``"<int>"`` (any integer) and
    ``"<starts:PREFIX>"`` (a string starting with PREFIX)."""
    if isinstance(expected, str) and expected.startswith("<") and expected.endswith(">"):
        if expected == "<int>":
            return isinstance(got, int) and not isinstance(got, bool)
        if expected.startswith("<starts:"):
            return isinstance(got, str) and got.startswith(expected[8:-1])
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and expected.keys() == got.keys()
            and all(matches(v, got[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(expected) == len(got)
            and all(matches(e, g) for e, g in zip(expected, got, strict=True))
        )
    return bool(expected == got) and type(expected) is type(got)


_KINDS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def wskit_spec(frame: dict[str, Any], schemas: dict[str, crosswire.MessageSchema[Any]]) -> Any:
    """The schema spec validate.mjs needs to check ``frame`` as a strict WS-Kit client."""
    kind = frame.get("type")
    builtins = {
        "ERROR": {"builtin": "ERROR"},
        "RPC_ERROR": {"builtin": "RPC_ERROR"},
        "$ws:rpc-progress": {"builtin": "RPC_PROGRESS", "field": "both"},
        "__heartbeat_ack": {"builtin": "HEARTBEAT_ACK"},
        "__heartbeat": {"builtin": "HEARTBEAT"},
    }
    if kind in builtins:
        return builtins[kind]
    schema = schemas[str(kind)]
    spec: dict[str, Any] = {"type": schema.type}
    if schema.payload is not None:
        spec["payload"] = {k: _KINDS.get(v, "any") for k, v in schema.payload.describe().items()}
    return spec


def ensure_wskit() -> None:
    """Install tests/wskit's pinned npm packages if they are not there yet."""
    if (WSKIT / "node_modules" / "@ws-kit" / "zod").exists():
        return
    _, npm = node_commands()
    subprocess.run(
        [*npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WSKIT, check=True
    )


def validate_with_wskit(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run WS-Kit's validators on ``{"schema", "frame"}`` lines; one result per line."""
    ensure_wskit()
    out = subprocess.run(
        [*node_commands()[0], str(WSKIT / "validate.mjs")],
        input="\n".join(json.dumps(line) for line in lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
