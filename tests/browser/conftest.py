"""Fixtures of the browser stage: ``browser`` (a headless Chromium, Playwright's async API)
and ``artifacts`` (the folder that keeps a test's screenshots)."""

from __future__ import annotations

import re
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.browser import ARTIFACTS, NoBrowser, chromium_executable


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium's path; a loud skip of the browser stage when there is none."""
    try:
        return chromium_executable()
    except NoBrowser as missing:
        message = f"BROWSER STAGE SKIPPED: {missing}"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """A headless Chromium, closed at teardown."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """``artifacts/browser/<test name>/``, emptied: what the test keeps for people to look at."""
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    return folder
