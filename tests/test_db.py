"""The result database: records survive a reopen, one row per key, concurrent writers, files it
must not touch, JSON-lines export and the ``db`` command."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from exo_egraph.cli import main
from exo_egraph.db import SCHEMA_VERSION, DatabaseError, Machine, Record, ResultDB, default_path
from exo_egraph.measure import Measurement


def _record(i: int, kernel: str = "k" * 20, target: str = "cpu", machine: str = "m" * 16, **kw) -> Record:
    m = Measurement(
        ok=True if i % 3 else (None if i % 2 else False), exact=bool(i % 2), unit="s", naive=2.0e-3,
        median=1.0e-3 / (1 + i), spread=0.01 * i, naive_spread=0.02, runs=5 + i, message="ok" if i % 3 else "differs",
        timings=tuple(1.0e-3 / (1 + i) + j * 1e-7 for j in range(3)),
    )  # fmt: skip
    fields = dict(
        kernel=kernel, kernel_name="gemm", target=target, machine=machine, script_hash=f"s{i:04d}",
        program=f"p{i // 2}", script=f"def schedule(p):\n    return p  # {i}\n", predicted=None if i == 0 else 1.5 * i,
        features={"a": (float(i), 0.25)} if i % 2 else {}, measurement=m, created=1000.0 + i,
    )  # fmt: skip
    return Record(**{**fields, **kw})


def test_round_trip_after_reopen(tmp_path):
    path = tmp_path / "nested" / "results.db"  # folders are created
    written = [_record(i) for i in range(6)]
    with ResultDB(path) as db:
        db.add_machine(Machine("cpu model", "avx2 #abcdef", "gcc 13", "-O3"))
        for r in written:
            db.record(r)
    with ResultDB(path) as db:  # resume: a new connection sees everything
        assert db.records() == written
        assert db.machines() == [Machine("cpu model", "avx2 #abcdef", "gcc 13", "-O3")]
        db.add_machine(Machine("cpu model", "avx2 #abcdef", "gcc 13", "-O3"))  # again: ignored
        assert len(db.machines()) == 1


def test_same_key_keeps_one_row_the_newer(tmp_path):
    first = _record(1)
    again = replace(first, measurement=replace(first.measurement, median=5e-4), program="other", created=2000.0)
    with ResultDB(tmp_path / "r.db") as db:
        db.record(first)
        db.record(_record(2))
        db.record(again)
        assert db.records() == [_record(2), again]
        # another target, machine or kernel is another row
        db.record(replace(first, target="cpu+reassociate"))
        db.record(replace(first, machine="x" * 16))
        assert len(db.records()) == 4


def test_filters(tmp_path):
    rows = [
        _record(1, kernel="a", target="cpu", machine="m1"), _record(2, kernel="a", target="cpu+reassociate", machine="m1"),
        _record(3, kernel="b", target="cpu", machine="m1"), _record(4, kernel="a", target="cpu", machine="m2"),
    ]  # fmt: skip
    with ResultDB(tmp_path / "r.db") as db:
        for r in rows:
            db.record(r)
        assert db.records(kernel="a") == [rows[0], rows[1], rows[3]]
        assert db.records(target="cpu") == [rows[0], rows[2], rows[3]]
        assert db.records(kernel="a", target="cpu", machine="m2") == [rows[3]]
        assert db.records(machine="nope") == []
        summaries = {(k.kernel, k.target, k.machine): k for k in db.kernels()}
        assert set(summaries) == {("a", "cpu", "m1"), ("a", "cpu+reassociate", "m1"), ("b", "cpu", "m1"), ("a", "cpu", "m2")}
        assert summaries["a", "cpu", "m1"].measured == 1 and summaries["a", "cpu", "m1"].last == 1001.0


def test_kernel_summary_best_speedup_counts_only_ok(tmp_path):
    with ResultDB(tmp_path / "r.db") as db:
        for i in range(7):  # i = 0, 3, 6: ok is False or None, and they have the highest speed-ups of some
            db.record(_record(i))
        db.record(_record(9, kernel="bad"))  # only an unmatched output: no best speed-up
        (bad,) = [k for k in db.kernels() if k.kernel == "bad"]
        (good,) = [k for k in db.kernels() if k.kernel != "bad"]
    assert bad.best_speedup is None and bad.measured == 1
    assert good.measured == 7 and good.last == 1006.0
    assert good.best_speedup == pytest.approx(_record(5).measurement.speedup)  # i=5 is the fastest ok one


def _writer(path: str, worker: int, n: int, barrier) -> None:
    barrier.wait()  # open at once too: the schema set-up races as well
    with ResultDB(path) as db:
        for i in range(n):
            db.record(_record(i, kernel=f"kernel{worker}"))


def test_concurrent_writers(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    path, workers, n = tmp_path / "shared.db", 3, 40
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(str(path), w, n, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    with ResultDB(path) as db:
        for w in range(workers):
            assert db.records(kernel=f"kernel{w}") == [_record(i, kernel=f"kernel{w}") for i in range(n)]


def test_corrupt_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "results.db"
    junk = bytes(range(256)) * 64
    path.write_bytes(junk)
    with pytest.raises(DatabaseError) as e:
        ResultDB(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    assert path.read_bytes() == junk


def test_other_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="not an exo-egraph result database"):
        ResultDB(path)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "r.db"
    with ResultDB(path) as db:
        db.record(_record(1))
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError) as e:
        ResultDB(path)
    assert "99" in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)
    assert path.read_bytes() == before
    assert SCHEMA_VERSION == 1


def test_export_jsonl_parses_back(tmp_path):
    written = [_record(i) for i in range(5)]
    with ResultDB(tmp_path / "r.db") as db:
        for r in written:
            db.record(r)
        out = io.StringIO()
        assert db.export_jsonl(out) == 5
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    objects = [json.loads(line) for line in lines]
    assert [Record.from_json(d) for d in objects] == written
    assert objects[1]["measurement"]["timings"] == list(written[1].measurement.timings)
    assert objects[1]["measurement"]["speedup"] == written[1].measurement.speedup
    assert objects[0]["predicted"] is None and objects[1]["features"] == {"a": [1.0, 0.25]}


def test_default_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_path() == tmp_path / "exo-egraph" / "results.db"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".cache" / "exo-egraph" / "results.db"


def test_machine_fingerprint():
    m = Machine.this("-O3 -march=native")
    assert m.cflags == "-O3 -march=native" and m.cpu and "#" in m.isa and m.compiler
    assert m.fingerprint == Machine.this("-O3 -march=native").fingerprint and len(m.fingerprint) == 16
    assert m.fingerprint != Machine.this("-O2").fingerprint


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def filled(tmp_path) -> Path:
    path = tmp_path / "r.db"
    with ResultDB(path) as db:
        for i in range(1, 4):
            db.record(_record(i, kernel="f00dfeed" + "0" * 12))
        db.record(_record(1, kernel="beef" + "0" * 16, kernel_name="conv"))
    return path


def test_cli_list_show_export(filled, capsys):
    code, out, _ = _cli(capsys, "db", "list", "--db", str(filled))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0].split()[0] == "kernel"
    conv = next(line for line in lines if line.startswith("conv"))
    assert "beef" in conv and "cpu" in conv and f"{_record(1).measurement.speedup:.2f}x" in conv

    code, out, _ = _cli(capsys, "db", "show", "gemm", "--db", str(filled))
    assert code == 0 and "gemm f00dfeed" in out
    for i in (1, 2, 3):
        assert f"s{i:04d}" in out and f"{_record(i).measurement.speedup:.2f}x" in out
    code, out, _ = _cli(capsys, "db", "show", "beef", "--db", str(filled))  # a fingerprint prefix
    assert code == 0 and "conv beef" in out and "gemm" not in out and "s0001" in out

    code, out, _ = _cli(capsys, "db", "export", "--jsonl", "--db", str(filled))
    assert code == 0 and len(out.splitlines()) == 4
    assert {json.loads(line)["kernel_name"] for line in out.splitlines()} == {"gemm", "conv"}


def test_cli_errors_are_one_line(tmp_path, filled, capsys):
    missing = tmp_path / "none" / "results.db"
    for action in (["list"], ["show", "gemm"], ["export", "--jsonl"]):
        code, out, err = _cli(capsys, "db", *action, "--db", str(missing))
        assert code == 2 and out == "" and len(err.splitlines()) == 1 and str(missing) in err
    assert not missing.exists() and not missing.parent.exists()  # not created

    code, _, err = _cli(capsys, "db", "show", "nosuch", "--db", str(filled))
    assert code == 2 and len(err.splitlines()) == 1 and "gemm" in err  # names the kernels it has

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 10)
    code, _, err = _cli(capsys, "db", "list", "--db", str(junk))
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("exo-egraph: ") and str(junk) in err
