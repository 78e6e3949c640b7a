"""The command line: a shipped kernel end to end, and one clear line with exit 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from exo_egraph.cli import main

KERNELS = Path(__file__).resolve().parent.parent / "benchmarks" / "kernels"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_explore_writes_schedule_and_report(tmp_path, capsys):
    code, out, _ = _run(capsys, "explore", f"{KERNELS}/conv1d.py::conv1d_i8", "--out", str(tmp_path))
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kernel"] == "conv1d_i8" and report["target"] == "cpu"
    assert isinstance(report["egraph"]["schedules"], int) and report["egraph"]["schedules"] > 1
    for key in ("enodes", "eclasses", "iterations", "stop_reason", "seconds"):
        assert key in report["egraph"]
    assert report["replay"] == {"ok": True, "roundtrip": True, "failures": []}
    assert report["validation"]["ok"] and report["validation"]["exact"]
    v = report["validation"]
    assert v["naive_seconds"] > 0 and v["scheduled_seconds"] > 0
    assert abs(v["speedup"] - v["naive_seconds"] / v["scheduled_seconds"]) < 1e-9
    # report.json holds one record per saturation iteration, with matches per Exo call
    history = report["egraph"]["history"]
    assert len(history) == report["egraph"]["iterations"] and history[-1]["enodes"] >= history[0]["enodes"]
    assert sum(h["matches"].get("reorder_loops", 0) for h in history) > 0
    assert "def schedule(p):" in (tmp_path / "schedule.py").read_text()
    assert "schedules held" in out
    assert set(report["phases"]) == {"lower", "saturate", "extract", "replay", "validate"} and report["peak_rss_mb"] > 0


def _one_line_error(capsys, *argv: str) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and "saturating" not in line]
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_missing_file(capsys, tmp_path):
    assert "no such file" in _one_line_error(capsys, "explore", str(tmp_path / "nope.py"))


def test_no_such_proc(capsys):
    assert "no proc named nope" in _one_line_error(capsys, "explore", f"{KERNELS}/matmul.py::nope")


def test_several_procs_and_none_named(capsys):
    assert "name one as" in _one_line_error(capsys, "explore", f"{KERNELS}/matmul.py")


def test_file_that_fails_to_import(capsys, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import no_such_module_here\n")
    assert "failed to import" in _one_line_error(capsys, "explore", str(bad))


def test_unsupported_construct_names_it_and_its_line(capsys, tmp_path):
    src = tmp_path / "k.py"
    src.write_text(
        "from __future__ import annotations\nfrom exo import proc, DRAM\n\n@proc\n"
        "def halve(a: f32[16] @ DRAM):\n    for i in seq(0, 16):\n        a[i / 2] = 0.0\n"
    )
    line = _one_line_error(capsys, "explore", str(src))
    assert "index operator '/'" in line and ":7" in line


def test_budget_reached_is_a_success_that_keeps_the_best_so_far(capsys, tmp_path):
    code, _, err = _run(capsys, "explore", f"{KERNELS}/matmul.py::matmul_i8_16", "--node-limit", "250", "--out", str(tmp_path))
    assert code == 0 and "stopped early (node-limit)" in err
    assert (tmp_path / "schedule.py").exists() and (tmp_path / "report.json").exists()
    assert json.loads((tmp_path / "report.json").read_text())["egraph"]["stop_reason"] == "node-limit"


def test_check_rules_prints_a_table_per_rule(capsys):
    code, out, err = _run(capsys, "check-rules", "--examples", "4", "--seed", "3", "--rules", "reorder_loops", "divide_loop")
    assert code == 0
    assert "\r" not in err and err.count("\n") <= 2  # in a log: a plain line now and then, not one per example
    header, *rows = out.strip().splitlines()
    assert header.split()[:2] == ["rule", "examples"]
    assert [r.split()[0] for r in rows] == ["reorder_loops", "divide_loop"]
    assert all(r.split()[1] == "4" and r.split()[-1] == "ok" for r in rows)


def test_check_rules_unknown_rule(capsys):
    assert "unknown rule nope" in _one_line_error(capsys, "check-rules", "--rules", "nope")


def test_cflags_set_how_validation_builds_and_report_records_them(tmp_path, capsys):
    argv = ["explore", f"{KERNELS}/conv1d.py::conv1d_i8", "--out", str(tmp_path), "--budget-s", "20"]
    code, out, _ = _run(capsys, *argv, "--cflags", "-O3 -march=native -fwrapv")
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["build"] == "gcc -O3 -march=native -fwrapv" and report["validation"]["ok"]
    assert "-O3 -march=native" in out
    assert "--cflags takes gcc flags" in _one_line_error(capsys, *argv, "--cflags", "O3")


def test_an_interrupt_while_the_kernel_loads_is_one_line_and_exit_130(capsys, tmp_path, monkeypatch):
    """Ctrl-C before the search begins (importing the kernel's file can take seconds): no
    traceback, nothing written."""
    import exo_egraph.cli as cli

    def interrupted(_spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_proc", interrupted)
    code, _, err = _run(capsys, "explore", f"{KERNELS}/conv1d.py::conv1d_i8", "--out", str(tmp_path / "o"))
    assert code == 130 and err.strip() == "exo-egraph: interrupted before anything was written"
    assert not (tmp_path / "o").exists()
