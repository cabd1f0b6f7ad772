"""The ``crosswire`` command.

    crosswire run MODULE:ATTRIBUTE [--host HOST] [--port PORT] [--server NAME] [--workers N]
    crosswire demo [--host HOST] [--port PORT] [--server NAME]
    crosswire types MODULE:ATTRIBUTE [-o FILE]

``run`` imports ``MODULE`` (the current directory is on the import path, as with uvicorn) and
serves its ``App`` until SIGINT or SIGTERM, which close every connection with 1001; with
``--workers N``, from N processes on one port, which the App's bus (Redis) must connect:
without one, it refuses to start. A worker that dies is replaced; one that keeps dying stops
them all (exit status 1). ``demo`` serves the chat demo of :mod:`crosswire.demo`. Once
listening, both print one line with the address (``ws://...``) on standard output. ``types``
writes the TypeScript types of the App's messages, RPCs and topics
(:mod:`crosswire.typescript`) to ``FILE``, or to standard output.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .app import App
from .errors import ConfigurationError, WorkerError
from .server import SERVERS, RunningServer, ServerName, serve

__all__ = ["load_app", "main"]


class TargetError(Exception):
    """``MODULE:ATTRIBUTE`` does not name an App; the message says why."""


def load_app(target: str) -> App:
    """Import ``MODULE:ATTRIBUTE`` (attribute may be dotted) and return the App it names."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise TargetError(f"expected MODULE:ATTRIBUTE (e.g. myapp.ws:app), got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise TargetError(f"no module named {module_name!r}") from exc
        raise
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(obj, App):
        raise TargetError(
            f"{target} is a {type(obj).__name__}, not a crosswire.App; "
            "wrap your hooks: app = crosswire.App(hooks)"
        )
    return obj


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crosswire", description="Serve crosswire WebSocket applications."
    )
    parser.add_argument("--version", action="version", version=f"crosswire {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="serve an App: crosswire run MODULE:ATTRIBUTE")
    run.add_argument("target", metavar="MODULE:ATTRIBUTE", help="where the App is, e.g. chat:app")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the port; more than one needs the App's Hub on Redis "
        "(default: %(default)s)",
    )
    types = commands.add_parser(
        "types",
        help="write TypeScript types for an App's messages, RPCs and topics: "
        "crosswire types MODULE:ATTRIBUTE [-o FILE]",
    )
    types.add_argument("target", metavar="MODULE:ATTRIBUTE", help="where the App is, e.g. chat:app")
    types.add_argument(
        "-o", "--output", metavar="FILE", help="the file to write (default: standard output)"
    )
    demo = commands.add_parser("demo", help="serve the chat demo (in-memory, nothing to set up)")
    for command in (run, demo):
        command.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
        command.add_argument("--port", type=int, default=8000, help="default: %(default)s")
        command.add_argument(
            "--server", choices=SERVERS, default="websockets", help="default: %(default)s"
        )
        command.add_argument(
            "--log-level",
            choices=("debug", "info", "warning", "error"),
            default="info",
            help="default: %(default)s",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``crosswire`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "types":
        return _types(parser, args.target, args.output)
    # The command is an application: it may configure logging; the library never does. Its
    # start line is on standard output; the logs (standard error) say when it stops, and
    # nothing per connection above DEBUG on any server (crosswire.logs).
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from .demo import PATH, app

        what = "the demo"
        path = PATH
    else:
        try:
            app = load_app(args.target)
        except TargetError as exc:
            parser.error(str(exc))
        what = args.target
        path = ""
    server: ServerName = args.server

    def started(running: RunningServer) -> None:
        host = f"[{running.host}]" if ":" in running.host else running.host
        page = f", page http://{host}:{running.port}/" if args.command == "demo" else ""
        workers = getattr(args, "workers", 1)
        several = f", {workers} workers" if workers > 1 else ""
        print(
            f"crosswire: serving {what} on {running.url}{path}{page} with {server}{several} "
            "(Ctrl+C to stop)",
            flush=True,
        )

    try:
        workers = getattr(args, "workers", 1)
        serve(app, host=args.host, port=args.port, server=server, on_start=started, workers=workers)
    except OSError as exc:
        print(f"crosswire: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except (ConfigurationError, WorkerError) as exc:
        print(f"crosswire: {exc}", file=sys.stderr)
        return 1
    return 0


def _types(parser: argparse.ArgumentParser, target: str, output: str | None) -> int:
    from .typescript import app_types

    try:
        text = app_types(load_app(target), target)
    except TargetError as exc:
        parser.error(str(exc))
    except ConfigurationError as exc:
        print(f"crosswire: {exc}", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        print(f"crosswire: cannot write {output}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
