"""Autobahn|Testsuite 25.10.1's fuzzing client against an echo App on each server.

The App echoes every message with ``Limits(max_message_size=16 MiB)`` and every other limit
at its default. Groups 1-7, 9 and 10 run in the test command; ``CROSSWIRE_AUTOBAHN=full``
runs every case, compression (12, 13) included, about 15 minutes per server. A failure
outside ``allowlist.py`` fails the test, and so does an allowed case that passes. The
reports stay in ``.autobahn/reports/<server>/`` (open ``index.html``).

Without CPython 2.7 the tests skip, saying so in the summary and as a warning.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

import crosswire
from crosswire import App, Limits, Message, Peer, define_hooks
from crosswire.server import SERVERS
from tests.autobahn.allowlist import ALLOWED
from tests.autobahn.harness import (
    CASES,
    COMPRESSION_CASES,
    FULL_CASES,
    HOME,
    Unavailable,
    ensure_wstest,
    failures,
    run_fuzzingclient,
)
from tests.support import skip_stage

FULL = os.environ.get("CROSSWIRE_AUTOBAHN") == "full"


@pytest.fixture(scope="session")
def wstest() -> Path:
    """Autobahn|Testsuite's ``wstest``, installed on first use; a loud skip without 2.7."""
    try:
        return ensure_wstest()
    except Unavailable as missing:
        skip_stage("AUTOBAHN", missing)


def echo(peer: Peer, msg: Message) -> None:
    peer.send(msg.raw)


@pytest.mark.timeout(1800 if FULL else 300)
@pytest.mark.parametrize("server", SERVERS)
async def test_autobahn_fuzzingclient(wstest: Path, server: str) -> None:
    app = App(define_hooks(message=echo), limits=Limits(max_message_size=16 * 1024 * 1024))
    running = await crosswire.start(app, server=server)  # type: ignore[arg-type]
    outdir = HOME / "reports" / server
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    cases = FULL_CASES if FULL else CASES
    try:
        results = await run_fuzzingclient(
            wstest,
            running.url,
            server,
            cases,
            outdir,
            exclude=COMPRESSION_CASES if server == "picows" else (),  # (it has none)
            timeout=1700 if FULL else 280,
        )
    finally:
        await asyncio.wait_for(running.aclose(), 15)
    failed, stale = failures(results, ALLOWED[server])
    report = outdir / "report" / "index.html"
    assert not failed, f"{len(failed)} unexpected failures ({report}):\n" + "\n".join(failed)
    assert not stale, "allow-listed cases that passed (remove them):\n" + "\n".join(stale)
