"""The comparison of Autobahn's results with the allow-list (no wstest needed)."""

from __future__ import annotations

from crosswire.server import SERVERS
from tests.autobahn.allowlist import ALLOWED
from tests.autobahn.harness import failures


def result(behavior: str, close: str = "OK") -> dict[str, str]:
    return {"behavior": behavior, "behaviorClose": close}


def test_failures_outside_the_allow_list_and_stale_entries_are_reported() -> None:
    results = {
        "1.1.1": result("OK"),
        "6.4.3": result("NON-STRICT"),
        "7.1.5": result("FAILED", "WRONG CODE"),  # allowed
        "7.9.5": result("FAILED", "WRONG CODE"),  # not allowed
        "9.3.1": result("OK"),  # allowed, but passes
        "10.1.1": result("OK", "FAILED"),  # a closing handshake that failed
        "5.15": result("OK", "UNCLEAN"),  # Autobahn passes an unclean close
    }
    allowed = {"7.1.5": "why", "9.3.1": "why", "12.1.1": "why"}
    failed, stale = failures(results, allowed)
    assert failed == ["7.9.5: FAILED / close WRONG CODE", "10.1.1: OK / close FAILED"]
    assert stale == ["9.3.1: OK / close OK", "12.1.1: did not run"]


def test_every_server_has_an_allow_list_and_every_entry_a_reason() -> None:
    assert set(ALLOWED) == set(SERVERS)
    for cases in ALLOWED.values():
        for case, reason in cases.items():
            assert all(part.isdigit() for part in case.split(".")), case
            assert len(reason) > 20, case
