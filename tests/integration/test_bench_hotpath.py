"""bench/hotpath.py, the in-process measure of crosswire's CPU per message: its probe runs
the benchmark's Apps (typed RPC with Struct and pydantic payloads, fan-out, and the picows
listener with real picows frames) in a fresh interpreter and reports every metric. Nothing
here asserts on speed, only that each measured path ran and answered."""

from __future__ import annotations

import sys

import pytest

from bench import hotpath


def test_the_probe_measures_every_metric_of_this_tree() -> None:
    result = hotpath.measure(hotpath.source_of(None), 5_000)
    assert set(result) == {key for key, _ in hotpath.METRICS}
    assert all(value > 0 for value in result.values())  # (the probe asserts what was sent)


def test_the_table_names_every_metric(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["hotpath.py", "--reps", "1", "--calls", "5000"])
    hotpath.main()
    out = capsys.readouterr().out
    for _, what in hotpath.METRICS:
        assert what in out
