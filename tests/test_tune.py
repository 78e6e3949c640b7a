"""``tune``: measured candidates, the database it resumes from, the never-worse guarantee, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exo_egraph import Budget
from exo_egraph.cli import load_proc, main
from exo_egraph.db import ResultDB
from exo_egraph.measure import Measurement
from exo_egraph.saturate import StopReason
from exo_egraph.tuning import Trial, _Run, tune

KERNELS = Path(__file__).resolve().parent.parent / "benchmarks" / "kernels"
QUICK = Budget(seconds=120)


def _proc(name: str):
    file = "gemv.py" if name.startswith("gemv") else "matmul.py"
    return load_proc(f"{KERNELS}/{file}::{name}")


def test_tune_measures_the_input_and_returns_the_fastest_measured_schedule(tmp_path):
    r = tune(_proc("matmul_f32_16"), "cpu", trials=6, workers=0, db=tmp_path / "r.db", budget=QUICK)
    trials = r.tuning.trials
    assert len(trials) == 6 and trials[0].origin == "input" and trials[0].script == ""
    assert len({t.program for t in trials}) == 6  # never the same program twice
    # the fastest were measured again alone, and that measurement is the one kept (here and in the database)
    confirmed = [t for t in trials if t.origin.endswith("confirmed")]
    assert 1 <= len(confirmed) <= 3
    assert all(t.measurement.ok for t in trials)
    def noise(t: Trial) -> float:
        return t.measurement.spread

    wins = [t for t in trials if t.script and t.measurement.speedup > 1 + noise(t)]
    if not wins:  # nothing beat the input by more than its noise: the input's empty schedule
        assert "input is returned" in r.tuning.verdict and "    pass" in r.script
    else:
        best = max(wins, key=lambda t: t.measurement.speedup)
        assert r.script == best.script and r.validation.speedup == best.measurement.speedup > 1.0
    report = r.to_json()
    assert set(report["phases"]) >= {"lower", "saturate", "extract", "replay", "measure"}
    assert report["peak_rss_mb"] > 0 and len(report["tuning"]["measurements"]) == 6
    with ResultDB(tmp_path / "r.db") as db:
        assert len(db.records()) == 6


def test_a_rerun_resumes_from_the_database(tmp_path):
    proc, db = _proc("matmul_f32_16"), tmp_path / "r.db"
    first = tune(proc, "cpu", trials=4, workers=0, db=db, budget=QUICK)
    again = tune(proc, "cpu", trials=4, workers=0, db=db, budget=QUICK)
    assert again.tuning.reused == 4 and again.stats is None  # nothing left to measure: no saturation
    assert again.script == first.script
    more = tune(proc, "cpu", trials=6, workers=0, db=db, budget=QUICK)
    assert more.tuning.reused == 4 and len(more.tuning.trials) == 6
    assert {t.program for t in first.tuning.trials} < {t.program for t in more.tuning.trials}


def test_ctrl_c_keeps_what_was_measured(tmp_path):
    seen = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "measure":
            seen.append(done)
            if done == 2:
                raise KeyboardInterrupt

    r = tune(_proc("matmul_f32_16"), "cpu", trials=8, workers=0, db=tmp_path / "r.db", budget=QUICK, progress=progress)
    assert r.stop_reason is StopReason.INTERRUPTED and len(r.tuning.trials) == 2
    with ResultDB(tmp_path / "r.db") as db:
        assert len(db.records()) == 2


def _trial(script: str, speedup: float, spread: float, ok: bool | None = True) -> Trial:
    m = Measurement(ok, bool(ok), "seconds", naive=1.0, median=1.0 / speedup, spread=spread, naive_spread=spread, runs=5)
    return Trial("model", script, script, 1.0, {}, m)


def test_never_worse_than_the_input():
    run = _Run(*[None] * 9)  # only the trials matter to the choice
    run.trials = [_trial("", 1.0, 0.01), _trial("a", 0.8, 0.01), _trial("b", 1.03, 0.05)]
    best, why = run.best()
    assert best is None and "input is returned" in why  # 3 % faster with 5 % noise is no win
    run.trials.append(_trial("c", 2.0, 1.5))  # a huge win, but within its noise
    assert run.best()[0] is None
    run.trials.append(_trial("d", 9.0, 0.01, ok=False))  # fast and wrong
    assert run.best()[0] is None
    run.trials.append(_trial("e", 1.4, 0.02))
    assert run.best()[0].script == "e"  # the noisy 2x is passed over for a clear 1.4x


def test_calibration_ranks_kernels_it_never_saw_better_than_the_model():
    """On real measurements (this project's 11 shipped kernels, 16 schedules each, recorded by
    benchmarks/calibration.py while the model as written still assumed SSE on every unit-stride
    loop, which the -O2 build does not deliver), a calibration fitted to the other kernels ranks a
    held-out kernel's schedules closer to the measured order than the model as written, on most
    kernels and on average. (The model now assumes its build, and calibration finds little to
    correct: `benchmarks/results/calibration.md`.)"""
    from benchmarks.calibration import read_rows
    from exo_egraph.extract.calibrate import held_out

    results_dir = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    rows = read_rows(results_dir / "calibration_rows_sse_model.jsonl")
    results = held_out(rows, y_tolerance=0.1)
    assert len(results) == len({r.kernel for r in rows}) >= 10
    improved = [h.kernel for h in results if h.calibrated > h.model]
    assert len(improved) > len(results) / 2, improved
    assert sum(h.calibrated for h in results) > sum(h.model for h in results) + 0.05 * len(results)


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_tune_writes_the_pair_and_db_shows_it(tmp_path, capsys):
    db, out = tmp_path / "r.db", tmp_path / "out"
    code, text, _ = _cli(capsys, "tune", f"{KERNELS}/matmul.py::matmul_f32_16", "--out", str(out), "--trials", "3",
                         "--workers", "0", "--db", str(db))  # fmt: skip
    assert code == 0, text
    report = json.loads((out / "report.json").read_text())
    assert report["tuning"]["trials"] == 3 and "measure" in report["phases"]
    assert "def schedule(p):" in (out / "schedule.py").read_text()
    code, text, _ = _cli(capsys, "db", "show", "matmul_f32_16", "--db", str(db))
    assert code == 0 and text.count("\n") >= 4


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--trials", "0"], "--trials"),
        (["--workers", "-1"], "--workers"),
        (["--cluster", "localhost"], "--cluster"),
        (["--target", "tpu"], "unknown target"),
    ],
)
def test_cli_tune_bad_arguments_are_one_line(tmp_path, capsys, argv, says):
    code, _, err = _cli(capsys, "tune", f"{KERNELS}/matmul.py::matmul_f32_16", "--out", str(tmp_path / "o"),
                        "--db", str(tmp_path / "r.db"), *argv)  # fmt: skip
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "o").exists()  # checked before any work


def test_cli_tune_refuses_a_corrupt_database(tmp_path, capsys):
    db = tmp_path / "r.db"
    db.write_bytes(b"not a database" * 100)
    code, _, err = _cli(capsys, "tune", f"{KERNELS}/matmul.py::matmul_f32_16", "--out", str(tmp_path / "o"), "--db", str(db))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert db.read_bytes() == b"not a database" * 100


def test_explore_calibrated_uses_the_fitted_model(tmp_path, capsys):
    db, kernel = tmp_path / "r.db", f"{KERNELS}/matmul.py::matmul_f32_16"
    code, _, err = _cli(capsys, "explore", kernel, "--out", str(tmp_path / "a"), "--calibrated", "--db", str(db))
    assert code == 2 and "no result database" in err  # nothing measured yet: said, not guessed
    tune(_proc("matmul_f32_16"), "cpu", trials=6, workers=0, db=db, budget=QUICK)
    code, _, _ = _cli(capsys, "explore", kernel, "--out", str(tmp_path / "b"), "--calibrated", "--db", str(db))
    assert code == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["cost_unit"] == "predicted seconds" and 0 < report["best"]["cost"] < 1


def test_tune_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        r = tune(_proc("matmul_f32_16"), "cpu", trials=4, cluster=cluster.scheduler_address, db=tmp_path / "r.db", budget=QUICK)
    assert len(r.tuning.trials) == 4 and all(t.measurement.ok for t in r.tuning.trials)
    assert r.tuning.workers == cluster.scheduler_address


def test_progress_in_a_log_is_plain_lines(capsys):
    from exo_egraph.cli import Progress

    progress = Progress()  # stderr is captured: not a terminal
    for i in range(50):
        progress.phase("measure", i, 0)
    progress.end()
    err = capsys.readouterr().err
    assert "\r" not in err and len(err.splitlines()) == 1  # one line per quiet interval, not one per update


def test_tune_on_gemmini_measures_cycles_on_the_model(tmp_path):
    proc = load_proc(f"{KERNELS}/gemmini.py::gemmini_matmul_16")
    r = tune(proc, "gemmini", trials=3, workers=0, db=tmp_path / "r.db", budget=QUICK)
    trials = r.tuning.trials
    assert [t.origin for t in trials][0] == "input" and all(t.measurement.unit == "cycles" for t in trials)
    for t in trials[1:]:
        assert t.measurement.ok and t.measurement.median == t.predicted  # modeled = simulated
    assert r.validation.speedup == max(t.measurement.speedup for t in trials) > 1
