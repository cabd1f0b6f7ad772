"""The browser client: ``crosswire/static/client.js``, one zero-dependency ES module with the
API of WS-Kit's ``wsClient`` (``docs/client.md``), served from an App's ``http`` handler."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from ..http import Response

__all__ = ["browser_module"]


@cache
def _source() -> bytes:
    return files("crosswire").joinpath("static/client.js").read_bytes()


def browser_module() -> Response:
    """An HTTP response with the browser client, for an App's ``http`` handler::

        def http(request: Request) -> Response:
            if request.path == "/crosswire/client.js":
                return browser_module()
            return Response(404, "not found")

    and in the page: ``import { wsClient } from "/crosswire/client.js";``.
    """
    return Response(
        200,
        _source(),
        {"Cache-Control": "no-cache"},
        content_type="text/javascript; charset=utf-8",
    )
