"""Reading a token from a handshake request: header, subprotocol, query; never printed."""

from __future__ import annotations

from crosswire import Headers, Request
from crosswire.auth import Credentials, bearer_token


def request(query: str = "", **headers: str) -> Request:
    return Request("/", query, Headers((k.replace("_", "-"), v) for k, v in headers.items()))


def test_the_header_comes_first_then_the_subprotocol_then_the_query() -> None:
    everything = request(
        "access_token=q", authorization="Bearer h", sec_websocket_protocol="chat, bearer.p"
    )
    assert bearer_token(everything) == Credentials("h", "header")
    both = request("access_token=q", sec_websocket_protocol="chat, bearer.p")
    assert bearer_token(both) == Credentials("p", "protocol", "bearer.p")
    assert bearer_token(request("a=1&access_token=q")) == Credentials("q", "query")


def test_what_is_not_a_token_is_ignored() -> None:
    assert bearer_token(request()) is None
    assert bearer_token(request("access_token=")) is None
    assert bearer_token(request(authorization="Basic dXNlcjpwdw==")) is None
    assert bearer_token(request(authorization="Bearer ")) is None
    assert bearer_token(request(sec_websocket_protocol="bearer.")) is None


def test_the_names_can_be_changed() -> None:
    custom = request("token=q", sec_websocket_protocol="jwt.p")
    assert bearer_token(custom, protocol_prefix="jwt.") == Credentials("p", "protocol", "jwt.p")
    assert bearer_token(request("token=q"), query_param="token") == Credentials("q", "query")


def test_the_token_is_never_printed() -> None:
    found = bearer_token(request(authorization="Bearer s3cret"))
    assert found is not None and "s3cret" not in repr(found)
    assert "s3cret" not in repr(request("access_token=s3cret", authorization="Bearer s3cret"))


def test_any_whitespace_separates_the_scheme() -> None:
    assert bearer_token(request(authorization="bearer\ttok")) == Credentials("tok", "header")
