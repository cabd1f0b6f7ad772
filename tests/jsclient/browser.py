"""The scenarios in a headless Chromium: a crosswire App serves a blank page, this folder's
modules and the client (``browser_module()``: the module as crosswire serves it); a page of
the browser imports ``browser.mjs`` and runs one scenario, whose ``step(name)`` calls a
function Playwright exposes, answered by :meth:`BrowserScenario.go_on`."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import orjson
from playwright.async_api import ConsoleMessage, Page
from playwright.async_api import Error as PlaywrightError

import crosswire
from crosswire.client import browser_module
from tests.support import TIMEOUT

HERE = Path(__file__).resolve().parent
#: What the harness serves from this folder, under ``/jsclient/``.
MODULES = ("scenarios.mjs", "browser.mjs")
#: What Chromium logs as an error when a WebSocket cannot connect.
REFUSED = re.compile(r"WebSocket connection to '[^']*' failed: ")
PAGE = "<!doctype html><title>crosswire client scenarios</title>"
#: Run in the page: the scenario, its result as JSON text.
RUN = """async ([scenario, url, more]) => {
  const { run } = await import("/jsclient/browser.mjs");
  return await run(scenario, url, more);
}"""


def serve_harness(request: crosswire.Request) -> crosswire.Response:
    """The ``http`` handler of the harness App."""
    if request.path == "/":
        return crosswire.Response(200, PAGE, content_type="text/html; charset=utf-8")
    if request.path == "/crosswire/client.js":
        return browser_module()
    name = request.path.removeprefix("/jsclient/")
    if name in MODULES:
        body = (HERE / name).read_bytes()
        return crosswire.Response(200, body, content_type="text/javascript; charset=utf-8")
    return crosswire.Response(404, "not found")


def harness_app() -> crosswire.App:
    """An App with no WebSocket to speak of: its ``http`` handler serves the harness."""
    return crosswire.App(crosswire.Router(), http=serve_harness)


class BrowserScenario:
    """One run of a scenario in a page: ``step()`` waits for the scenario's next step,
    ``go_on()`` answers it, ``result()`` is what it returned. An uncaught error in the page, or
    a ``console.error``, fails the scenario with its text."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self._steps: asyncio.Queue[str] = asyncio.Queue()
        self._waiting: asyncio.Future[None] | None = None
        self._errors: list[str] = []
        self._run: asyncio.Task[str] | None = None

    async def start(self, harness: str, url: str, name: str, more: tuple[str, ...]) -> None:
        """Opens the harness page at ``harness`` and starts scenario ``name`` in it."""
        self.page.on("pageerror", lambda error: self._errors.append(f"page error: {error}"))
        self.page.on("console", self._console)
        await asyncio.wait_for(self.page.expose_function("crosswireStep", self._step), TIMEOUT)
        await asyncio.wait_for(self.page.goto(harness), TIMEOUT)
        self._run = asyncio.create_task(self.page.evaluate(RUN, [name, url, list(more)]))

    def _console(self, message: ConsoleMessage) -> None:
        # Not the browser's own line for each WebSocket that could not open: scenarios expect
        # refused connections.
        if message.type == "error" and not REFUSED.match(message.text):
            self._errors.append(f"console.error: {message.text}")

    async def _step(self, name: str) -> None:
        self._waiting = asyncio.get_running_loop().create_future()
        self._steps.put_nowait(name)
        await self._waiting

    async def step(self) -> str:
        assert self._run is not None
        taking = asyncio.ensure_future(self._steps.get())
        try:
            await asyncio.wait(
                {taking, self._run}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            taking.cancel()
        if taking.done() and not taking.cancelled():
            return taking.result()
        if self._run.done():
            raise AssertionError(f"the scenario ended with no step: {await self._outcome()}")
        raise TimeoutError(f"no step within {TIMEOUT} s; {self._errors}")

    def go_on(self) -> None:
        assert self._waiting is not None and not self._waiting.done(), "not at a step"
        self._waiting.set_result(None)

    async def result(self) -> Any:
        assert self._run is not None
        await asyncio.wait({self._run}, timeout=TIMEOUT)
        return orjson.loads(await self._outcome())

    async def _outcome(self) -> str:
        assert self._run is not None
        if not self._run.done():
            raise TimeoutError(f"the scenario did not end within {TIMEOUT} s; {self._errors}")
        try:
            text = self._run.result()
        except PlaywrightError as failed:
            raise AssertionError("\n".join([failed.message, *self._errors])) from None
        assert not self._errors, "\n".join(self._errors)
        return text

    async def aclose(self) -> None:
        """Lets a step waiting go, stops the scenario, and closes the page."""
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)
        if self._run is not None:
            self._run.cancel()
            with contextlib.suppress(asyncio.CancelledError, PlaywrightError):
                await self._run
        await asyncio.wait_for(self.page.close(), TIMEOUT)
