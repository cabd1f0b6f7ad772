"""The in-flight table and deadlines: pure bookkeeping."""

from __future__ import annotations

import pytest

from crosswire import ErrorCode, WsError
from crosswire.rpc import MAX_TIMEOUT, CallTable, deadline_for


def test_deadline_from_client_timeout_or_default() -> None:
    assert deadline_for(100.0, None, 30.0) == 130.0
    assert deadline_for(100.0, 250, 30.0) == 100.25
    assert deadline_for(0.0, 10**12, 30.0) == MAX_TIMEOUT


def test_limit_and_duplicates_are_refused_with_their_codes() -> None:
    table: CallTable[str] = CallTable(limit=2)
    table.admit("a", "call-a")
    with pytest.raises(WsError) as dup:
        table.check_room("a")
    assert dup.value.code is ErrorCode.ALREADY_EXISTS
    table.admit("b", "call-b")
    with pytest.raises(WsError) as full:
        table.admit("c", "call-c")
    assert full.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert full.value.retry_after_ms is not None
    assert "c" not in table
    assert table.pop("a") == "call-a" and table.pop("a", None) is None
    table.admit("c", "call-c")
    assert table.drain() == ["call-b", "call-c"] and len(table) == 0
