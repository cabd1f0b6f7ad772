"""Where the browser stage finds its Chromium, and what it says when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.browser as stage


def test_without_any_chromium_the_stage_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CROSSWIRE_CHROMIUM", raising=False)
    monkeypatch.setattr(stage, "HERE", tmp_path)  # no npm package installed here
    monkeypatch.setenv("PATH", str(tmp_path))  # and no chromium on the PATH
    with pytest.raises(stage.NoBrowser, match=r"python3 dev.py test.*apt-get install chromium"):
        stage.chromium_executable()


def test_a_chromium_on_the_path_is_used_without_the_npm_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CROSSWIRE_CHROMIUM", raising=False)
    monkeypatch.setattr(stage, "HERE", tmp_path)
    chromium = tmp_path / "chromium"
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert stage.chromium_executable() == str(chromium)


def test_crosswire_chromium_names_the_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSWIRE_CHROMIUM", "/opt/chrome/chrome")
    assert stage.chromium_executable() == "/opt/chrome/chrome"
