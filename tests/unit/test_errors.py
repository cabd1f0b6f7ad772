"""Error codes, retry inference and WsError's forms (seed 002's tables)."""

from __future__ import annotations

import pytest

from crosswire import ErrorCode, WsError, is_retryable


def test_the_thirteen_codes_and_their_retry_inference() -> None:
    retryable = {"DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "ABORTED"}
    assert len(ErrorCode) == 13
    for code in ErrorCode:
        assert is_retryable(code) is (code.value in retryable), code


def test_payload_carries_only_what_was_set() -> None:
    assert WsError("NOT_FOUND", "no such room", {"room": "a"}).to_payload() == {
        "code": "NOT_FOUND",
        "message": "no such room",
        "details": {"room": "a"},
    }
    assert WsError(ErrorCode.UNAVAILABLE).to_payload() == {
        "code": "UNAVAILABLE",
        "message": "UNAVAILABLE",
    }
    assert WsError("RESOURCE_EXHAUSTED", "busy", retry_after_ms=500).to_payload() == {
        "code": "RESOURCE_EXHAUSTED",
        "message": "busy",
        "retryAfterMs": 500,
    }
    explicit = WsError("INTERNAL", "flaky", retryable=True, retry_after_ms=10)
    assert explicit.to_payload()["retryable"] is True


@pytest.mark.parametrize("code", ["NOT_FOUND", "INVALID_ARGUMENT", "INTERNAL", "CANCELLED"])
def test_retry_after_is_refused_on_terminal_codes(code: str) -> None:
    with pytest.raises(ValueError, match="only allowed on retryable"):
        WsError(code, "x", retry_after_ms=100)


def test_unknown_codes_and_negative_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown error code 'TEAPOT'"):
        WsError("TEAPOT")
    with pytest.raises(ValueError, match=">= 0"):
        WsError("UNAVAILABLE", retry_after_ms=-1)


def test_wrap_keeps_the_cause_and_returns_ws_errors_unchanged() -> None:
    try:
        raise KeyError("user 7")
    except KeyError as exc:
        wrapped = WsError.wrap(exc, "NOT_FOUND", "no user")
    assert wrapped.code is ErrorCode.NOT_FOUND and wrapped.message == "no user"
    assert isinstance(wrapped.original_error, KeyError)
    assert "cause" not in wrapped.to_payload()
    logged = wrapped.to_json()
    assert logged["cause"]["name"] == "KeyError" and "user 7" in logged["cause"]["message"]
    same = WsError("ABORTED")
    assert WsError.wrap(same, "INTERNAL") is same
    assert WsError.wrap(ValueError("bad")).code is ErrorCode.INTERNAL
