"""The examples the README shows run as the README says, and do what it says."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from tests.support import RunCommand, recv

ROOT = Path(__file__).resolve().parents[2]


def readme_block(after: str) -> str:
    """The fenced Python block that follows the line ``after`` in README.md."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(re.escape(after) + r"\s*```python\n(.*?)```", readme, re.DOTALL)
    assert found, f"no python block after {after!r} in README.md"
    return found.group(1)


def test_readme_shows_the_examples_verbatim() -> None:
    for example in ("hello", "echo"):
        shown = readme_block(f"<!-- examples/{example}.py -->")
        assert shown == (ROOT / f"examples/{example}.py").read_text(), example


async def test_hello_example_echoes_and_broadcasts(crosswire_cmd: RunCommand) -> None:
    cmd = await crosswire_cmd("run", "examples.hello:app", "--port", "0", cwd=ROOT)
    await cmd.started()
    async with connect(cmd.ws_url) as a, connect(cmd.ws_url) as b, connect(cmd.ws_url) as c:
        hellos = [orjson.loads(await recv(ws))["hello"] for ws in (a, b, c)]
        assert len(set(hellos)) == 3
        await a.send("just me")
        assert await recv(a) == "just me"
        await a.send("/all hi everyone")
        assert [await recv(b), await recv(c)] == ["hi everyone", "hi everyone"]
        await a.send("ping")
        assert await recv(a) == "ping"  # a got nothing from its own /all in between
