"""Autobahn|Testsuite's fuzzing client, installed and run for the conformance tests.

``wstest`` runs on CPython 2.7 only. :func:`ensure_wstest` makes its virtualenv in
``.autobahn/`` (git-ignored) the first time, from the pins in ``requirements.txt`` (installed
with ``--no-deps``, so exactly those): virtualenv itself comes from PyPI into
``.autobahn/bootstrap`` (its last release that runs on 2.7), so nothing is installed into the
machine's Python 2.7. CPython 2.7 is found as ``$CROSSWIRE_PYTHON27``, else pyenv's 2.7.18,
else ``python2.7`` on the PATH; without it, the tests say so and skip.

:func:`run_fuzzingclient` runs the cases against one URL and returns Autobahn's results
(``index.json``); :func:`failures` compares them with the allow-list.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CASES",
    "COMPRESSION_CASES",
    "FULL_CASES",
    "HOME",
    "Unavailable",
    "ensure_wstest",
    "failures",
    "python27",
    "run_fuzzingclient",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HOME = ROOT / ".autobahn"
VENV = HOME / "venv"
REQUIREMENTS = HERE / "requirements.txt"
#: The last virtualenv that runs on (and makes virtualenvs for) Python 2.7.
VIRTUALENV = "virtualenv==20.15.1"

#: Cases run by ``python3 dev.py test``: groups 1-7, 9 and 10, about 20-30 s per server
#: (group 9's messages of up to 16 MiB take about 10 s of it).
CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*")
#: ``CROSSWIRE_AUTOBAHN=full``: every case, compression (groups 12 and 13: thousands of
#: compressed messages, about 14 minutes per server on 2 cores) included.
FULL_CASES = ("*",)
#: Compression, which a server that does not negotiate it (picows) cannot run.
COMPRESSION_CASES = ("12.*", "13.*")

#: What Autobahn calls a pass, of a case and of its closing handshake (an unclean close, such
#: as a server that drops the connection after failing it, is no failure to Autobahn).
PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
CLOSE_PASSING = PASSING | {"UNCLEAN"}


class Unavailable(Exception):
    """CPython 2.7 is missing, so Autobahn|Testsuite cannot run here."""


def python27() -> str | None:
    """The CPython 2.7 to run ``wstest`` with, or None."""
    explicit = os.environ.get("CROSSWIRE_PYTHON27")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        found = subprocess.run(
            [pyenv, "prefix", "2.7.18"], capture_output=True, text=True, check=False
        )
        if found.returncode == 0:
            candidate = Path(found.stdout.strip()) / "bin" / "python2.7"
            if candidate.exists():
                return str(candidate)
    return shutil.which("python2.7")


def ensure_wstest() -> Path:
    """``wstest`` in ``.autobahn/venv``, installed first if needed (about a minute); raises
    :class:`Unavailable` without CPython 2.7."""
    python = python27()  # (the virtualenv runs on it too)
    if python is None:
        raise Unavailable(
            "CPython 2.7 was not found (no $CROSSWIRE_PYTHON27, no pyenv 2.7.18, no python2.7 "
            "on the PATH): Autobahn|Testsuite needs it"
        )
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    wstest = VENV / "bin" / "wstest"
    stamp = VENV / f"crosswire-installed-{digest}"
    if stamp.exists() and wstest.exists():
        return wstest
    if VENV.exists():
        shutil.rmtree(VENV)
    bootstrap = HOME / "bootstrap"
    quiet = ["--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [python, "-m", "pip", "install", *quiet, "--target", str(bootstrap), VIRTUALENV],
        check=True,
    )
    subprocess.run(
        [python, "-m", "virtualenv", "--quiet", str(VENV)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(bootstrap)},
    )
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", *quiet]
    subprocess.run([*pip, "--no-deps", "--requirement", str(REQUIREMENTS)], check=True)
    stamp.touch()
    return wstest


async def run_fuzzingclient(
    wstest: Path,
    url: str,
    agent: str,
    cases: Iterable[str],
    outdir: Path,
    *,
    exclude: Iterable[str] = (),
    timeout: float,  # noqa: ASYNC109 - one subprocess, bounded as a whole
) -> dict[str, dict[str, Any]]:
    """Run ``cases`` but ``exclude`` against ``url``; Autobahn's result for each case, by
    case id."""
    spec = {
        "outdir": str(outdir / "report"),
        "servers": [{"agent": agent, "url": url}],
        "cases": list(cases),
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }
    spec_file = outdir / "fuzzingclient.json"
    spec_file.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        str(wstest),
        "-m",
        "fuzzingclient",
        "-s",
        str(spec_file),
        cwd=outdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    index = outdir / "report" / "index.json"
    if proc.returncode != 0 or not index.exists():
        raise RuntimeError(f"wstest failed ({proc.returncode}):\n{out.decode(errors='replace')}")
    results: dict[str, dict[str, Any]] = json.loads(index.read_text())[agent]
    return results


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def failures(
    results: Mapping[str, Mapping[str, Any]], allowed: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """``(failed, stale)``: the cases that did not pass and are not in ``allowed``, and the
    allowed cases that did pass (or did not run), each with Autobahn's verdict."""
    failed, stale = [], []
    for case in sorted(results, key=case_key):
        result = results[case]
        passed = result["behavior"] in PASSING and result["behaviorClose"] in CLOSE_PASSING
        verdict = f"{case}: {result['behavior']} / close {result['behaviorClose']}"
        if not passed and case not in allowed:
            failed.append(verdict)
        elif passed and case in allowed:
            stale.append(verdict)
    stale += [f"{case}: did not run" for case in allowed if case not in results]
    return failed, stale
