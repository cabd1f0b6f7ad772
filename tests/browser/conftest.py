"""Fixtures of the browser stage: ``artifacts`` (the folder that keeps a test's screenshots);
``chromium`` and ``browser`` (a headless Chromium, Playwright's async API) are in
tests/conftest.py, for the client scenarios run in the browser too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """``artifacts/browser/<test name>/``, emptied: what the test keeps for people to look at."""
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    return folder
