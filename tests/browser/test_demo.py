"""The demo chat in a real headless Chromium, as a person uses it: two pages chat, see who is
online and who is typing, join and leave rooms (and are told why a join fails), export the
last messages with progress, and ride out a server restart on the same port, showing what was
said meanwhile. Once on ``crosswire demo`` (in memory), once across two instances on Redis.
Each page's screenshot is kept in ``artifacts/browser/<test>/``."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from tests.redis_server import RedisServer
from tests.support import TIMEOUT, Command, RunCommand

#: Playwright's waits (ms): a reconnect after a restart takes up to the demo's 2 s backoff.
WAIT_MS = TIMEOUT * 2000


class ChatPage:
    """One browser tab on the demo, driven through what a person sees and does."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"{name}: {error}"))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        # The browser logs a refused WebSocket while the server is down; that is expected.
        if message.type == "error" and "WebSocket" not in message.text:
            self.errors.append(f"{self.name}: {message.text}")

    async def online(self) -> None:
        await expect(self.page.locator("#state")).to_have_text("online", timeout=WAIT_MS)

    async def say(self, text: str) -> None:
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")

    async def sees(self, sender: str, text: str) -> None:
        said = self.page.locator("#messages li").filter(has_text=text)
        await expect(said).to_have_count(1, timeout=WAIT_MS)
        await expect(said.locator(".from")).to_have_text(sender)

    async def members(self, *names: str) -> None:
        await expect(self.page.locator("#members li")).to_have_text(sorted(names), timeout=WAIT_MS)

    async def join(self, room: str) -> None:
        await self.page.fill("#join-name", room)
        await self.page.press("#join-name", "Enter")

    async def in_room(self, room: str) -> None:
        await expect(self.page.locator("#room-title")).to_have_text(f"# {room}", timeout=WAIT_MS)

    async def screenshot(self, folder: Path) -> None:
        await self.page.screenshot(path=folder / f"{self.name}.png", full_page=True)


OpenPage = Callable[[str, str], Awaitable[ChatPage]]


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """``await open_page(base_url, name)``: a tab of its own (its own storage) on the demo."""
    pages: list[ChatPage] = []

    async def open_(base_url: str, name: str) -> ChatPage:
        context = await browser.new_context(viewport={"width": 1100, "height": 720})
        page = ChatPage(await context.new_page(), name)
        await page.page.goto(f"{base_url}/?name={name}")
        pages.append(page)
        return page

    yield open_
    errors = [error for page in pages for error in page.errors]
    assert not errors, errors


async def stop(cmd: Command) -> None:
    cmd.proc.send_signal(signal.SIGTERM)
    assert await cmd.exit_code() == 0


async def test_two_pages_chat_on_the_in_memory_demo_and_ride_out_a_restart(
    crosswire_cmd: RunCommand, open_page: OpenPage, artifacts: Path
) -> None:
    server = await crosswire_cmd("demo", "--port", "0")
    await server.started()
    ann = await open_page(server.http_url, "ann")
    ben = await open_page(server.http_url, "ben")
    for page in (ann, ben):
        await page.online()
        await page.in_room("lobby")
        await page.members("ann", "ben")  # presence, live: ben came after ann

    await ann.say("hello ben")
    await ben.sees("ann", "hello ben")
    await ann.sees("ann", "hello ben")

    await ben.page.locator("#text").press_sequentially("typing", delay=20)
    await expect(ann.page.locator("#typing")).to_have_text("ben is typing…", timeout=WAIT_MS)
    await ben.say("hi ann")
    await ann.sees("ben", "hi ann")

    # Join errors are shown; a room joined shows its members, and a leave updates them.
    await ann.join("staff")
    await expect(ann.page.locator("#join-error")).to_contain_text("Staff only")
    await ann.join("bad name!")
    await expect(ann.page.locator("#join-error")).to_contain_text("lowercase letters")
    await ann.join("python")
    await ann.in_room("python")
    await ann.members("ann")
    await ben.join("python")
    await ann.members("ann", "ben")
    await ann.page.locator("#rooms li[data-room=python] button").click()
    await ann.in_room("lobby")
    await ben.members("ben")
    await ben.page.click("#rooms li[data-room=lobby]")
    await ben.in_room("lobby")

    # An RPC with progress: the room's last messages as a transcript.
    await ann.page.fill("#export-last", "10")
    await ann.page.click("#export-form button")
    await expect(ann.page.locator("#export-status")).to_have_text("exported 2 messages")
    assert await ann.page.get_attribute("#export-progress", "value") == "2"
    transcript = await ann.page.evaluate(
        "fetch(document.getElementById('export-link').href).then((r) => r.text())"
    )
    assert transcript.startswith("# lobby: the last 2 messages\n")
    assert "ann: hello ben" in transcript and transcript.rstrip().endswith("ben: hi ann")

    # The server stops: both pages say so; what ann says meanwhile goes out once it is back.
    port = server.http_url.rsplit(":", 1)[1]
    await stop(server)
    for page in (ann, ben):
        await expect(page.page.locator("#state")).to_have_text("reconnecting…", timeout=WAIT_MS)
    await ann.say("sent while the server was down")
    await expect(ann.page.locator("#notice")).to_contain_text("Offline")
    restarted = await crosswire_cmd("demo", "--port", port)
    await restarted.started()
    for page in (ann, ben):
        await page.online()
        await page.sees("ann", "sent while the server was down")
        await page.sees("ann", "hello ben")  # what the page showed before stays
        await page.members("ann", "ben")
    await ann.screenshot(artifacts)
    await ben.screenshot(artifacts)
    assert (artifacts / "ann.png").stat().st_size > 0


async def test_two_instances_on_redis_are_one_chat_and_a_reconnect_recovers_what_was_missed(
    crosswire_cmd: RunCommand, open_page: OpenPage, redis_server: RedisServer, artifacts: Path
) -> None:
    env = {"CROSSWIRE_REDIS_URL": redis_server.url}
    first = await crosswire_cmd("run", "crosswire.demo:app", "--port", "0", env=env)
    second = await crosswire_cmd("run", "crosswire.demo:app", "--port", "0", env=env)
    await first.started()
    await second.started()
    ann = await open_page(first.http_url, "ann")
    ben = await open_page(second.http_url, "ben")
    for page in (ann, ben):
        await page.online()
        await page.members("ann", "ben")

    await ann.say("across instances")
    await ben.sees("ann", "across instances")
    await ann.page.locator("#text").press_sequentially("typing", delay=20)
    await expect(ben.page.locator("#typing")).to_have_text("ann is typing…", timeout=WAIT_MS)
    await ann.page.fill("#text", "")

    # ann's instance stops; ben goes on talking; ann comes back and recovers what it missed
    # from the history in Redis (no resync notice: nothing was lost).
    port = first.http_url.rsplit(":", 1)[1]
    await stop(first)
    await expect(ann.page.locator("#state")).to_have_text("reconnecting…", timeout=WAIT_MS)
    await ben.members("ben")
    for n in range(3):
        await ben.say(f"while you were away {n}")
        await ben.sees("ben", f"while you were away {n}")
    restarted = await crosswire_cmd("run", "crosswire.demo:app", "--port", port, env=env)
    await restarted.started()
    await ann.online()
    for n in range(3):
        await ann.sees("ben", f"while you were away {n}")
    await ann.sees("ann", "across instances")
    await expect(ann.page.locator("#notice")).to_have_text("")
    for page in (ann, ben):
        await page.members("ann", "ben")
    await ann.screenshot(artifacts)
    await ben.screenshot(artifacts)
