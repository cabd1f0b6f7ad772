"""What crosswire lets through of the server libraries' logs: nothing that can carry a secret.

The server libraries log what a request carries: websockets and uvicorn every request line,
header and frame at DEBUG, uvicorn each WebSocket's path with its query string at INFO (where
``?access_token=`` travels), aiohttp an offered subprotocol (``bearer.<token>``) at WARNING,
and aiohttp and uvicorn the raw bytes of a malformed request or frame in a traceback at ERROR.
crosswire never logs a header value, token or message body, and keeps the libraries from doing
it with one filter, :class:`LibraryFilter`:

* the libraries' dumps of the wire (request lines, headers, frames: DEBUG) are dropped;
* a line about a client's bad input (a malformed request, invalid UTF-8, a subprotocol that
  is not served) becomes a DEBUG line without the exception's text or the offending values;
* a path in a line loses its query string.

The loggers crosswire gives the libraries that take one (:func:`library_logger`:
``crosswire.server.websockets``, ``.picows``, ``.aiohttp``, ``.hypercorn``) are crosswire's
own, so their filter also drops every other DEBUG line and demotes INFO lines (one or two per
connection on some servers) to DEBUG: what is left above DEBUG is about the server (a bug, a
failed listen), never about a connection. The libraries that write to their own loggers get
the filter there (:func:`filter_library_logger`: ``aiohttp.websocket`` and ``uvicorn.error``,
when crosswire serves through them), without the demotion, since those loggers also serve the
rest of the user's application. A logger passed explicitly in a server's options
(``logger=``) is the user's choice and is left alone.
"""

from __future__ import annotations

import logging
import re

__all__ = ["LibraryFilter", "filter_library_logger", "library_logger"]

#: The modules whose exceptions mean "the client sent something bad".
_CLIENT_ERROR_MODULES = (
    "aiohttp.http_exceptions",
    "h11",
    "httptools",
    "websockets.exceptions",
    "wsproto",
)
#: Words of the lines about a client's bad input, as the libraries write them.
_CLIENT_INPUT_LINES = (
    "Invalid UTF-8",  # uvicorn
    "Invalid HTTP request",  # uvicorn
    "Client protocols",  # aiohttp: the offered subprotocols, which may carry a token
    "WS parser error",  # picows: a frame it refuses (too big, bad opcode, ...)
)
#: Words of per-connection lines that libraries log above INFO (picows' flow control).
_CONNECTION_CHATTER = ("Protocol writing pause", "Protocol writing resume")
_QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")
#: How websockets' protocol (also inside uvicorn) starts its dumps of the wire.
_WIRE_DUMP = ("< ", "> ", "= ", "% ", "! ", "x ", "- ")


class LibraryFilter(logging.Filter):
    """The rules of the module docstring for one logger; ``owned``: a logger crosswire gives a
    library (every DEBUG line dropped, INFO lines demoted to DEBUG)."""

    def __init__(self, *, owned: bool) -> None:
        super().__init__()
        self.owned = owned

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG and (
            self.owned or str(record.msg).startswith(_WIRE_DUMP)
        ):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        msg = str(record.msg)
        if _from_client(exc) or any(words in msg for words in _CLIENT_INPUT_LINES):
            what = f" ({type(exc).__name__})" if exc is not None else ""
            record.msg = _strip_query(_template(msg)) + what
            record.args = None
            record.exc_info = record.exc_text = record.stack_info = None
            return _demote(record)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _strip_query(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if self.owned and (
            record.levelno <= logging.INFO or any(words in msg for words in _CONNECTION_CHATTER)
        ):
            return _demote(record)
        return True


_OWNED = LibraryFilter(owned=True)
_FOREIGN = LibraryFilter(owned=False)


def library_logger(library: str) -> logging.Logger:
    """The logger crosswire hands server ``library`` (``crosswire.server.<library>``), with
    the :class:`LibraryFilter` on it."""
    logger = logging.getLogger(f"crosswire.server.{library}")
    _add(logger, _OWNED)
    return logger


def filter_library_logger(name: str) -> None:
    """Put the :class:`LibraryFilter` on a library's own logger ``name`` (idempotent)."""
    _add(logging.getLogger(name), _FOREIGN)


def _add(logger: logging.Logger, chosen: LibraryFilter) -> None:
    if chosen not in logger.filters:
        logger.addFilter(chosen)


def _from_client(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, UnicodeDecodeError):
        return True
    return type(exc).__module__.startswith(_CLIENT_ERROR_MODULES)


def _template(msg: object) -> str:
    """The line without its ``%s`` values (they may be what the client sent)."""
    return re.sub(r"%[-#0 +]*\d*(?:\.\d+)?[sdrifx]", "…", str(msg))


def _strip_query(text: str) -> str:
    return _QUERY.sub(r"\1?…", text)


def _demote(record: logging.LogRecord) -> bool:
    """Make ``record`` a DEBUG line; kept only if its logger is enabled for DEBUG."""
    record.levelno = logging.DEBUG
    record.levelname = "DEBUG"
    return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
