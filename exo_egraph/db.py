"""The result database: every measured schedule, kept across runs in one SQLite file.

``tune`` records each `Measurement` as soon as it has it, so an interrupted run loses nothing it
measured and a re-run can skip what is already known. A row is keyed by what determines the
measurement: the kernel's text, the target (with its options), the machine and the schedule's
script. Several ``tune`` processes may write one file at once: the file is in WAL mode and a writer
waits for the lock (``busy_timeout``) rather than failing.

A file this module does not recognise (not SQLite, a newer schema, unreadable) raises
`DatabaseError` and is never reset or overwritten: it may hold hours of measurements.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, TextIO

from .validate.measurement import Measurement

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
_NOTABLE_ISA = ("avx512f", "avx2", "fma", "asimd", "sve")  # the flags that decide which kernels are fast


def _features(stored: Mapping[str, Any]) -> dict[str, tuple[float, ...]]:
    return {k: tuple(v) for k, v in stored.items()}


def default_path() -> Path:
    """``$XDG_CACHE_HOME/exo-egraph/results.db``, else ``~/.cache/exo-egraph/results.db``."""
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache) if cache else Path.home() / ".cache") / "exo-egraph" / "results.db"


class DatabaseError(Exception):
    """A result database that cannot be used; the message is one line naming the file."""


def _sha(*parts: str, n: int = 16) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Machine:
    """What a timing depends on besides the code: the CPU, its instruction set, the compiler and flags."""

    cpu: str
    isa: str
    compiler: str
    cflags: str

    @property
    def fingerprint(self) -> str:
        return _sha(self.cpu, self.isa, self.compiler, self.cflags)

    @staticmethod
    def this(cflags: str) -> "Machine":
        """The host this process runs on, compiling with ``cflags``."""
        cpu, flags = "", set()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not cpu:
                    cpu = value.strip()
                elif key in ("flags", "Features") and not flags:  # x86 / ARM
                    flags = set(value.split())
        except OSError:
            pass
        cpu = cpu or platform.processor() or platform.machine() or "unknown"
        notable = "+".join(f for f in _NOTABLE_ISA if f in flags) or "base"
        isa = f"{notable} #{_sha(' '.join(sorted(flags)), n=6)}"
        try:
            run = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=30)
            compiler = (run.stdout.splitlines() or ["none"])[0].strip() if run.returncode == 0 else "none"
        except (OSError, subprocess.SubprocessError):
            compiler = "none"
        return Machine(cpu, isa, compiler, cflags)


_KEYS = ("kernel", "kernel_name", "target", "machine", "script_hash")  # the unique key (less kernel_name) and the name


@dataclass(frozen=True)
class Record:
    """One measured schedule: which kernel, target, machine and script, and what was measured."""

    kernel: str  # KernelSource.fingerprint
    kernel_name: str
    target: str  # the target's name and options, say "cpu+reassociate"
    machine: str  # Machine.fingerprint
    script_hash: str
    program: str  # fingerprint of the scheduled program: scripts giving one program share it
    script: str
    predicted: float | None  # the cost model's cost
    features: Mapping[str, tuple[float, ...]]  # the model's cost terms per assumption (`extract.calibrate.Features`)
    measurement: Measurement
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """All fields; the measurement nested, with its timings."""
        d = {k: getattr(self, k) for k in _KEYS + ("program", "script", "predicted", "created")}
        m = {**self.measurement.to_json(), "timings": list(self.measurement.timings)}
        return {**d, "features": {k: list(v) for k, v in self.features.items()}, "measurement": m}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "Record":
        """The record `to_json` gave ``d``."""
        m = d["measurement"]
        rest = {k: d[k] for k in _KEYS + ("program", "script", "predicted", "created")}
        return Record(**rest, features=_features(d["features"]), measurement=Measurement.from_json(m, tuple(m["timings"])))


@dataclass(frozen=True)
class KernelSummary:
    """What the database holds for one kernel on one target and machine."""

    kernel: str
    kernel_name: str
    target: str
    machine: str
    measured: int
    best_speedup: float | None  # among measurements whose outputs matched; None if there are none
    last: float  # created time of the newest record


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS machines (
    fingerprint TEXT PRIMARY KEY, cpu TEXT NOT NULL, isa TEXT NOT NULL, compiler TEXT NOT NULL, cflags TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    kernel TEXT NOT NULL, kernel_name TEXT NOT NULL, target TEXT NOT NULL, machine TEXT NOT NULL,
    script_hash TEXT NOT NULL, program TEXT NOT NULL, script TEXT NOT NULL, predicted REAL, features TEXT NOT NULL,
    ok INTEGER, exact INTEGER NOT NULL, unit TEXT NOT NULL, naive REAL NOT NULL, median REAL NOT NULL,
    spread REAL NOT NULL, naive_spread REAL NOT NULL, runs INTEGER NOT NULL, message TEXT NOT NULL,
    timings TEXT NOT NULL, created REAL NOT NULL,
    UNIQUE (kernel, target, machine, script_hash));
"""
_COLUMNS = (*_KEYS, "program", "script", "predicted", "features", "ok", "exact", "unit", "naive", "median",
            "spread", "naive_spread", "runs", "message", "timings", "created")  # fmt: skip


class ResultDB:
    """The measurements in one SQLite file, created with its folders if missing. A context manager."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit (isolation_level=None): transactions are explicit, and each record commits alone
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise self._error(e) from None
        give_up = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._setup()
                return
            except DatabaseError:
                self._db.close()
                raise
            except sqlite3.OperationalError as e:
                # switching to WAL, or a lock upgrade that would deadlock, fails at once rather than
                # waiting on the busy handler while another process sets the file up: try again
                if "locked" in str(e) and time.monotonic() < give_up:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    time.sleep(random.uniform(0.01, 0.05))
                    continue
                self._db.close()
                raise self._error(e) from None
            except sqlite3.Error as e:
                self._db.close()
                raise self._error(e) from None

    def _setup(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._check_version()  # before any write: a file we don't understand stays as it is
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("BEGIN IMMEDIATE")
        for statement in filter(str.strip, _SCHEMA.split(";")):  # not executescript: it would commit early
            self._db.execute(statement)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._db.execute("COMMIT")

    def _error(self, e: Exception) -> DatabaseError:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        return DatabaseError(f"{self.path}: cannot use as a result database ({text}); the file was left as it is")

    def _check_version(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return  # a new (or empty) file
        row = None
        if "meta" in tables:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise DatabaseError(
                f"{self.path}: an SQLite database but not an exo-egraph result database (no schema_version); left as it is"
            )
        if row[0] != str(SCHEMA_VERSION):
            newer = row[0].isdigit() and int(row[0]) > SCHEMA_VERSION
            hint = "written by a newer exo-egraph; upgrade it" if newer else "not supported"
            raise DatabaseError(f"{self.path}: schema version {row[0]} ({hint}; this one reads version {SCHEMA_VERSION})")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultDB":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add_machine(self, m: Machine) -> None:
        """Note a machine's details under its fingerprint (once)."""
        values = (m.fingerprint, m.cpu, m.isa, m.compiler, m.cflags)
        self._db.execute("INSERT OR IGNORE INTO machines VALUES (?, ?, ?, ?, ?)", values)

    def machines(self) -> list[Machine]:
        return [Machine(*row) for row in self._db.execute("SELECT cpu, isa, compiler, cflags FROM machines")]

    def record(self, r: Record) -> None:
        """Store a measurement, replacing an earlier one of the same kernel, target, machine and script."""
        m = r.measurement
        values = (
            # float(): a cost model may hand numpy scalars, which neither sqlite3 nor json take
            r.kernel, r.kernel_name, r.target, r.machine, r.script_hash, r.program, r.script,
            None if r.predicted is None else float(r.predicted), json.dumps({k: [float(x) for x in v] for k, v in r.features.items()}),
            None if m.ok is None else int(m.ok), int(m.exact), m.unit, m.naive, m.median, m.spread, m.naive_spread,
            m.runs, m.message, json.dumps([float(t) for t in m.timings]), r.created,
        )  # fmt: skip
        # one statement in autocommit mode: committed (durable) when it returns
        columns, marks = ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))
        self._db.execute(f"INSERT OR REPLACE INTO measurements ({columns}) VALUES ({marks})", values)

    def _rows(self, kernel: str | None, target: str | None, machine: str | None) -> Iterator[Record]:
        where = [(k, v) for k, v in (("kernel", kernel), ("target", target), ("machine", machine)) if v is not None]
        sql = f"SELECT {', '.join(_COLUMNS)} FROM measurements"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k, _ in where)
        for row in self._db.execute(sql + " ORDER BY created, rowid", [v for _, v in where]):
            d = dict(zip(_COLUMNS, row))
            ok = None if d["ok"] is None else bool(d["ok"])
            numbers = (d[k] for k in ("unit", "naive", "median", "spread", "naive_spread", "runs", "message"))
            meas = Measurement(ok, bool(d["exact"]), *numbers, timings=tuple(json.loads(d["timings"])))
            yield Record(*(d[k] for k in (*_KEYS, "program", "script", "predicted")),
                         features=_features(json.loads(d["features"])), measurement=meas, created=d["created"])  # fmt: skip

    def records(self, kernel: str | None = None, target: str | None = None, machine: str | None = None) -> list[Record]:
        """The records matching every filter given (None matches all), oldest first."""
        return list(self._rows(kernel, target, machine))

    def kernels(self) -> list[KernelSummary]:
        """One summary per (kernel, target, machine), by kernel name."""
        rows = self._db.execute(
            "SELECT kernel, MAX(kernel_name), target, machine, COUNT(*),"
            " MAX(CASE WHEN ok = 1 AND median > 0 THEN naive / median END), MAX(created)"
            " FROM measurements GROUP BY kernel, target, machine ORDER BY 2, 1, 3, 4"
        )
        return [KernelSummary(*row) for row in rows]

    def export_jsonl(self, out: TextIO) -> int:
        """Write every record as one JSON object per line; return how many."""
        n = 0
        for n, r in enumerate(self._rows(None, None, None), 1):
            out.write(json.dumps(r.to_json()) + "\n")
        return n
