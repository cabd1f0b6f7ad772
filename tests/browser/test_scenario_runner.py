"""The browser runner of the client scenarios (tests/jsclient/browser.py) says what went
wrong in the page: a scenario that throws, an uncaught error, a ``console.error``."""

from __future__ import annotations

import pytest

from tests.integration.test_browser_client import make_router
from tests.jsclient.browser import BrowserScenario
from tests.support import RunScenario, ServeRouter


async def test_a_scenario_that_throws_fails_with_its_error(
    serve_router: ServeRouter, browser_scenarios: RunScenario
) -> None:
    server = await serve_router(make_router([]))
    scenario = await browser_scenarios(server.url + "/", "no_such_scenario")
    with pytest.raises(AssertionError, match="is not a function"):
        await scenario.result()


async def test_errors_in_the_page_fail_the_scenario(
    serve_router: ServeRouter, browser_scenarios: RunScenario
) -> None:
    server = await serve_router(make_router([]))
    scenario = await browser_scenarios(server.url + "/", "deadline_and_abort")
    assert isinstance(scenario, BrowserScenario)
    assert await scenario.step() == "started"
    await scenario.page.evaluate(
        "() => { setTimeout(() => { throw new Error('boom') }); console.error('loud') }"
    )
    scenario.go_on()
    assert await scenario.step() == "aborted"
    scenario.go_on()
    with pytest.raises(AssertionError) as failed:
        await scenario.result()
    assert set(str(failed.value).splitlines()) == {"page error: boom", "console.error: loud"}
