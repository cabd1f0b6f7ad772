"""The browser client's scenarios (``scenarios.mjs``), and their runners: ``node.mjs`` in
Node.js (:class:`tests.support.NodeScenario`), ``browser.mjs`` in a headless Chromium
(:mod:`tests.jsclient.browser`). The ``run_scenario`` fixture runs each test in both."""
