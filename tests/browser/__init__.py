"""The browser stage: the demo and the browser client in a real headless Chromium.

The Chromium is npm's ``@sparticuz/chromium`` (this folder's package.json, pinned by its
lockfile; ``python3 dev.py test`` installs it), which carries the browser inside the package:
nothing is downloaded when the tests run. Playwright for Python drives it. ``CROSSWIRE_CHROMIUM``
names another Chromium; without the npm package, Debian's ``chromium`` on the PATH is used.
Without any, the tests of this folder skip, saying so in the summary and as a warning.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support import ROOT, node_commands

HERE = Path(__file__).resolve().parent
#: Where the tests keep their screenshots (ignored by git): one folder per test.
ARTIFACTS = Path(os.environ.get("CROSSWIRE_ARTIFACTS", ROOT / "artifacts")) / "browser"


class NoBrowser(Exception):
    """No Chromium to test with: the message says what to do."""


def chromium_executable() -> str:
    """The path of the Chromium to drive: ``$CROSSWIRE_CHROMIUM``, npm's (unpacked on first
    use), or ``chromium`` on the PATH. Raises :class:`NoBrowser` when there is none."""
    chosen = os.environ.get("CROSSWIRE_CHROMIUM")
    if chosen:
        return chosen
    if (HERE / "node_modules" / "@sparticuz" / "chromium").is_dir():
        node = node_commands()[0]
        found = subprocess.run(
            [*node, str(HERE / "chromium.mjs")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        path = found.stdout.strip().splitlines()[-1] if found.stdout.strip() else ""
        if found.returncode == 0 and Path(path).is_file():
            return path
        raise NoBrowser(f"@sparticuz/chromium could not unpack its Chromium: {found.stderr[-500:]}")
    for name in ("chromium", "chromium-browser"):
        on_path = shutil.which(name)
        if on_path:
            return on_path
    raise NoBrowser(
        "no Chromium: `python3 dev.py test` installs npm's @sparticuz/chromium in tests/browser "
        "(it failed, or was not run); `apt-get install chromium` works too"
    )
