"""The notebook example runs end to end, as a user would run it."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "explore.py"


def test_the_explore_example_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ns = runpy.run_path(str(EXAMPLE))
    result = ns["result"]
    assert result.validation.ok and result.cost < result.naive_cost
    assert ns["narrow"].stats.schedules < result.stats.schedules
    assert (tmp_path / "explore.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "def schedule(p):" in out and "targets: cpu, gemmini" in out
