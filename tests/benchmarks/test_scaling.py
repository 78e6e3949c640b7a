"""The scaling benchmark's pieces on a small kernel: one exploration in its own process, its
schedule applied again from the report's lines, the interleaved timing, and the targets it checks."""

from __future__ import annotations

from benchmarks import scaling


def test_one_exploration_replays_and_is_timed_and_reported():
    spec = scaling.KERNELS[64]
    row = scaling.run_one(spec, staged=True, budget_s=60)
    assert [s["name"] for s in row["stages"]] == ["sketch", "refine"] and row["stop"] == "saturated"
    assert row["cost"] < row["naive_cost"] and row["process_wall"] >= row["wall"] > 0
    proc = scaling.scheduled(spec, row["steps"])
    assert "for" in str(proc) and proc.name() == "matmul_f32_64"
    (speedup,) = scaling.speedups(spec, [row["steps"]], seconds=1.0)
    assert speedup > 0
    rows = [row | {"kernel": "512", "speedup": speedup, "process_wall": 31.0, "peak_rss_mb": 100.0}]
    text = scaling.table(rows, 60)
    assert "| 512 | staged |" in text and "512³ within 30 s and 1 GB: MISSED (31.0 s, 100 MB)" in text
