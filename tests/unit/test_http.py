"""The upgrade request and the answers to it: pure values."""

from __future__ import annotations

import pytest

from crosswire import Accept, Headers, QueryParams, Request, Response


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers([("Cookie", "a=1"), ("X-Token", "secret"), ("cookie", "b=2")])
    assert headers["COOKIE"] == "a=1"
    assert headers.getlist("cookie") == ["a=1", "b=2"]
    assert "x-token" in headers and "X-TOKEN" in headers
    assert headers.get("missing") is None
    assert headers.items_all() == [("cookie", "a=1"), ("x-token", "secret"), ("cookie", "b=2")]
    assert sorted(headers) == ["cookie", "x-token"]


def test_headers_and_query_repr_never_show_values() -> None:
    headers = Headers([("Authorization", "Bearer s3cret")])
    query = QueryParams.parse("token=s3cret")
    request = Request("/ws", "token=s3cret", headers, "10.0.0.1")
    for text in (repr(headers), repr(query), repr(request)):
        assert "s3cret" not in text
    assert "authorization" in repr(headers) and "token" in repr(query)
    assert repr(request) == "Request(path='/ws', remote_address='10.0.0.1')"


def test_request_parses_query_and_subprotocols() -> None:
    request = Request(
        "/chat",
        "room=a&room=b&flag=&x=%20y",
        Headers(
            [
                ("Upgrade", "WebSocket"),
                ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
                ("Sec-WebSocket-Protocol", "json"),
            ]
        ),
    )
    assert request.query["room"] == "a"
    assert request.query.getlist("room") == ["a", "b"]
    assert request.query["flag"] == "" and request.query["x"] == " y"
    assert request.subprotocols == ["chat.v2", "chat.v1", "json"]
    assert request.is_websocket
    assert not Request("/").is_websocket
    assert Request("/").remote_address is None


def test_response_adds_content_type_unless_given() -> None:
    page = Response(200, "<p>é</p>", content_type="text/html")
    assert page.body_bytes == "<p>é</p>".encode()
    assert page.header_items() == [("Content-Type", "text/html")]
    own = Response(401, b"no", {"content-type": "application/json", "WWW-Authenticate": "x"})
    assert own.header_items() == [("content-type", "application/json"), ("WWW-Authenticate", "x")]


def test_accept_defaults_open_with_nothing_extra() -> None:
    accept = Accept()
    assert (dict(accept.headers), accept.subprotocol, dict(accept.context)) == ({}, None, {})


def test_headers_iterate_each_name_once_in_order_and_share_the_usual_names() -> None:
    headers = Headers([("Host", "a"), ("X-Trace", "1"), ("x-trace", "2"), ("Origin", "o")])
    assert list(headers) == ["host", "x-trace", "origin"] and len(headers) == 3
    assert headers.items_all() == [
        ("host", "a"),
        ("x-trace", "1"),
        ("x-trace", "2"),
        ("origin", "o"),
    ]
    assert "X-TRACE" in headers and "cookie" not in headers
    with pytest.raises(KeyError):
        headers["cookie"]
    other = Headers([("HOST", "b")])
    # Every connection keeps its request: the common names are one string for all of them.
    assert next(iter(headers)) is next(iter(other))


def test_an_open_connection_keeps_its_request_without_the_handshakes_own_headers() -> None:
    request = Request(
        "/ws",
        "room=1",
        Headers(
            [
                ("Host", "h"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "k"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Extensions", "permessage-deflate"),
                ("Sec-WebSocket-Protocol", "chat"),
                ("Cookie", "c=1"),
            ]
        ),
        "10.0.0.1",
    )
    kept = request.opened()
    assert list(kept.headers) == ["host", "sec-websocket-protocol", "cookie"]
    assert kept.subprotocols == ["chat"] and kept.query["room"] == "1"
    assert (kept.path, kept.remote_address) == ("/ws", "10.0.0.1")
