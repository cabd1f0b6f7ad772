"""The picows adapter's read path (``crosswire/adapters/_picows_read.py``) runs compiled where
the install built it, and as Python from the same source where it did not, could not load, or
was turned off (``CROSSWIRE_NO_EXTENSIONS=1``). Every picows test of the suite runs on the
compiled path (CI builds it); here the picows tests that send the adapter every kind of frame
(hooks, hostile and malformed frames, fuzzed frames, coalescing) run again, as Python."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from importlib.metadata import version
from pathlib import Path

import pytest

import crosswire.adapters
from crosswire.adapters import picows
from crosswire.adapters._build_stamp import build_stamp

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(picows.__file__).with_name("_picows_read.py")
READ = "crosswire.adapters._picows_read"
#: The picows tests run again on the Python read path: every frame kind, good and bad.
AGAIN = [
    "tests/integration/test_hooks_everywhere.py",
    "tests/integration/test_frame_attacks.py",
    "tests/integration/test_fuzz_frames.py",
    "tests/integration/test_hostile_clients.py",
    "tests/integration/test_coalescing.py",
]


def built() -> list[Path]:
    """The extension modules the install built from the source (none without a compiler)."""
    return [p for p in SOURCE.parent.glob("_picows_read.*") if p.suffix in (".so", ".pyd")]


def test_the_read_path_runs_compiled_where_the_install_built_it() -> None:
    if not built():
        pytest.skip(
            "*** the C extension is not built (no C compiler at install?): "
            "picows' read path runs as Python ***"
        )
    assert picows.COMPILED
    on_ws_frame = picows._reader.__dict__["on_ws_frame"]
    assert not isinstance(on_ws_frame, types.FunctionType)  # C, not a Python function
    assert picows._Listener.__bases__ == (picows._reader,)


@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever ``_frame_reader()`` loads under the module's name is undone after the test."""
    monkeypatch.setitem(sys.modules, READ, sys.modules[READ])
    monkeypatch.setattr(crosswire.adapters, "_picows_read", sys.modules[READ])


def ran_as_python(reader: type, compiled: bool) -> bool:
    """The reader is the source's class, and importing the module now gives that source."""
    on_ws_frame = reader.__dict__["on_ws_frame"]
    return (
        not compiled
        and isinstance(on_ws_frame, types.FunctionType)
        and on_ws_frame.__code__.co_filename == str(SOURCE)
        and sys.modules[READ].FrameReader is reader
    )


def test_turned_off_or_unloadable_the_same_source_runs_as_python(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_loader: None
) -> None:
    monkeypatch.setenv("CROSSWIRE_NO_EXTENSIONS", "1")
    assert ran_as_python(*picows._frame_reader())

    # An extension that does not load is reported, and the source runs instead.
    monkeypatch.delenv("CROSSWIRE_NO_EXTENSIONS")
    monkeypatch.setitem(sys.modules, READ, None)
    with caplog.at_level(logging.WARNING, logger="crosswire.server.picows"):
        assert ran_as_python(*picows._frame_reader())
    assert "does not fit" in caplog.text


def test_an_extension_built_for_another_picows_or_source_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_loader: None
) -> None:
    """Cython's import check sees only the size of picows' types: the extension carries the
    picows release and the source it was built from, and runs only with those."""
    if not picows.COMPILED:
        pytest.skip("*** the C extension is not built: nothing to check it against ***")
    built = sys.modules[READ].BUILT_FOR
    assert built == build_stamp(version("picows"), SOURCE.parent)

    monkeypatch.setattr(picows, "version", lambda name: "2.99.0")  # another picows release
    with caplog.at_level(logging.WARNING, logger="crosswire.server.picows"):
        assert ran_as_python(*picows._frame_reader())
    assert f"built for {built}, running with picows 2.99.0" in caplog.text

    # The source edited after the build (an editable install that was not rebuilt).
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, READ, sys.modules[READ])
    monkeypatch.setattr(crosswire.adapters, "_picows_read", sys.modules[READ])
    edited = build_stamp(version("picows"), SOURCE.parent).replace("source ", "source edited-")
    monkeypatch.setattr(picows, "build_stamp", lambda *args: edited)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="crosswire.server.picows"):
        assert ran_as_python(*picows._frame_reader())
    assert "running with" in caplog.text and "edited-" in caplog.text


def test_the_picows_tests_pass_with_the_read_path_run_as_python() -> None:
    env = {**os.environ, "CROSSWIRE_NO_EXTENSIONS": "1"}
    check = "from crosswire.adapters import picows; print(picows.COMPILED)"
    out = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "picows", *AGAIN],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary, summary
