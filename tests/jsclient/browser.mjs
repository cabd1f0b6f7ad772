// Runs one scenario of scenarios.mjs in a page of the headless Chromium (tests/jsclient/
// browser.py serves this folder and drives the page). The client is imported as a crosswire App
// serves it, from browser_module(); step(name) calls the function Playwright exposes, which
// resolves once the Python side has acted.
import { wsClient } from "/crosswire/client.js";
import { scenarios } from "./scenarios.mjs";

export async function run(scenario, url, more) {
  const step = (name) => window.crosswireStep(name);
  return JSON.stringify(await scenarios[scenario]({ wsClient, url, more, step }));
}
