"""The ``crosswire`` command, run as a user runs it: a subprocess, real sockets, real signals."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect

from crosswire.server import SERVERS
from tests.support import TIMEOUT, RunCommand, closed_with, recv


@pytest.mark.parametrize("server", SERVERS)
async def test_demo_serves_page_and_chat_then_sigterm_closes_1001(
    crosswire_cmd: RunCommand, server: str
) -> None:
    cmd = await crosswire_cmd("demo", "--port", "0", "--server", server)
    await cmd.started()
    async with aiohttp.ClientSession() as http:
        async with http.get(cmd.http_url + "/") as page:
            assert page.status == 200
            assert page.headers["Content-Type"].startswith("text/html")
            assert "crosswire chat" in await page.text()
        async with http.get(cmd.http_url + "/nope") as missing:
            assert missing.status == 404

    async with (
        connect(cmd.ws_url + "/ws?name=ada") as ada,
        connect(cmd.ws_url + "/ws?name=bob") as bob,
    ):
        # The chat's messages in the canonical dialect (the page's are in tests/browser).
        for ws, name in ((ada, "ada"), (bob, "bob")):
            welcome = orjson.loads(await recv(ws))
            assert (welcome["type"], welcome["payload"]) == ("WELCOME", {"you": name})
            join = {
                "type": "$ws:join",
                "meta": {"correlationId": "j"},
                "payload": {"topic": "room:lobby"},
            }
            await ws.send(orjson.dumps(join).decode())
            assert orjson.loads(await recv(ws))["type"] == "$ws:join-ack"

        await ada.send(
            orjson.dumps({"type": "SAY", "payload": {"room": "lobby", "text": "hello"}}).decode()
        )
        for ws in (ada, bob):
            said = orjson.loads(await recv(ws))
            assert said["type"] == "SAID"
            assert {k: said["payload"][k] for k in ("room", "from", "text")} == {
                "room": "lobby",
                "from": "ada",
                "text": "hello",
            }

        await bob.send("not json")
        assert orjson.loads(await recv(bob))["type"] == "ERROR"
        too_long = {"type": "SAY", "payload": {"room": "lobby", "text": "x" * 1001}}
        await bob.send(orjson.dumps(too_long).decode())
        assert "1 to 1000 characters" in orjson.loads(await recv(bob))["payload"]["message"]
        elsewhere = {"type": "SAY", "payload": {"room": "python", "text": "hi"}}
        await bob.send(orjson.dumps(elsewhere).decode())
        assert orjson.loads(await recv(bob))["payload"]["code"] == "FAILED_PRECONDITION"

        cmd.proc.send_signal(signal.SIGTERM)
        for ws in (ada, bob):
            code, reason = await closed_with(ws)
            assert (code, reason) == (1001, "Server shutting down")
    assert await cmd.exit_code() == 0
    # One quiet scheme on every server: the start line on stdout (with the chat's path), the
    # shutdown in the log, and not one line per connection.
    assert cmd.start_line.endswith(f"/ws, page {cmd.http_url}/ with {server} (Ctrl+C to stop)")
    assert "serving" not in await cmd.stdout()
    logged = [line.split(" ", 2)[2] for line in (await cmd.stderr()).splitlines()]
    assert logged == [
        "INFO crosswire.server: shutting down: closing 2 connections with 1001",
        "INFO crosswire.server: stopped",
    ]


async def test_run_serves_a_users_app_and_sigint_stops_it(
    crosswire_cmd: RunCommand, tmp_path: Path
) -> None:
    (tmp_path / "myws.py").write_text(
        textwrap.dedent(
            """
            import crosswire

            def message(peer, msg):
                peer.send("echo:" + msg.text())

            app = crosswire.App(crosswire.define_hooks(message=message))
            """
        )
    )
    cmd = await crosswire_cmd("run", "myws:app", "--port", "0", cwd=tmp_path)
    await cmd.started()
    async with connect(cmd.ws_url) as ws:
        await ws.send("hi")
        assert await recv(ws) == "echo:hi"
        cmd.proc.send_signal(signal.SIGINT)
        assert (await closed_with(ws))[0] == 1001
    assert await cmd.exit_code() == 0


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("myws", "expected MODULE:ATTRIBUTE"),
        ("nosuchmodule:app", "no module named 'nosuchmodule'"),
        ("myws:nothing", "has no attribute 'nothing'"),
        ("myws:hooks", "is a Hooks, not a crosswire.App"),
    ],
)
async def test_run_explains_a_bad_target(
    crosswire_cmd: RunCommand, tmp_path: Path, target: str, message: str
) -> None:
    (tmp_path / "myws.py").write_text("import crosswire\nhooks = crosswire.define_hooks()\n")
    cmd = await crosswire_cmd("run", target, cwd=tmp_path)
    assert await cmd.exit_code() == 2
    assert message in await cmd.stderr()


async def test_port_in_use_is_reported(crosswire_cmd: RunCommand) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = await crosswire_cmd("demo", "--port", str(port))
        assert await cmd.exit_code() == 1
        assert f"cannot listen on 127.0.0.1:{port}" in await cmd.stderr()


def test_python_dash_m_runs_the_same_command() -> None:
    """``python -m crosswire`` is the same command (for environments without the script)."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "crosswire", "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        env={**os.environ},
        check=True,
    )
    assert out.stdout.startswith("crosswire ")


@pytest.mark.parametrize("server", ["picows", "aiohttp", "uvicorn", "hypercorn"])
async def test_a_server_whose_extra_is_missing_names_the_extra(
    crosswire_cmd: RunCommand, tmp_path: Path, server: str
) -> None:
    """What a user without the extra sees: which extra to install, not a traceback."""
    shadow = tmp_path / "shadow"
    for module in (server, "multidict", "starlette"):
        (shadow / module).mkdir(parents=True, exist_ok=True)
        message = f"No module named {module!r}"
        (shadow / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError({message!r}, name={module!r})\n"
        )
    cmd = await crosswire_cmd(
        "demo", "--port", "0", "--server", server, env={"PYTHONPATH": str(shadow)}
    )
    assert await cmd.exit_code() == 1
    stderr = await cmd.stderr()
    assert f'pip install "crosswire[{server}]"' in stderr
    assert "Traceback" not in stderr
