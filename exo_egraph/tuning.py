"""``tune(proc, target)``: saturate once, then measure candidates from the e-graph and learn from them.

``explore`` trusts the cost model; ``tune`` asks the machine. It saturates the e-graph once, then
in rounds: picks candidates — the cheapest under the current model (exploitation) and random
members of the e-graph, the model's favourites among them and a few it would not pick
(exploration), as MetaSchedule mixes the two — skips programs already measured, replays each
through Exo, measures it against the input in a worker (`exo_egraph.measure`), records it in the
result database (`exo_egraph.db`), and refits the model's weights to everything measured on this
machine (`extract.calibrate`). The input is always a measured candidate, and the answer is the
best *measured* schedule; one that does not beat the input by more than its own noise is not
returned: the input's (empty) schedule is.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
from functools import cached_property
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from exo import Procedure

from .api import DEFAULT_TOP_K, Candidate, Phases, Result, peak_rss_mb
from .db import Machine, Record, ResultDB, default_path
from .extract.calibrate import Calibration, Features, Row, fit, kendall_tau
from .measure import KernelSource, Measurement, MeasureTask, apply_script, kernel_source, pool_for, run_task
from .saturate import Budget, Deadline, Iteration, StopReason, TimeUp
from .script import Replayed, ReplayError
from .target import Pick, Target, Tunes, create

DEFAULT_TRIALS = 32
EXPLOIT = 0.75  # of each round's picks, the share taken from the model's cheapest; the rest explore
SAMPLES = 48  # random members of the e-graph drawn per round for exploration
WRITTEN_K = 16  # schedules extracted at once under the model as written (top-k costs grow with k)
SATURATION_SHARE = 0.3  # of the run's seconds, what saturation (with its extraction reserve) may take
CONFIRM = 3  # the fastest measured, measured again alone before one is chosen
MEASURE_SECONDS = 3.0  # timing budget per candidate (interleaved rounds stop sooner when stable)
TUNE_SECONDS = 600.0  # the whole run's default budget: measuring takes longer than exploring


@dataclass(frozen=True)
class Trial:
    """One measured candidate: where it came from, what the model said, what the machine said."""

    origin: str  # "input", "model" (as written), "calibrated", "explore", or "database" (an earlier run)
    program: str  # fingerprint of the program: equal programs compile to the same code
    script: str  # the schedule ("" for the input as written)
    predicted: float | None  # the target's model cost, as written (uncalibrated)
    features: Features
    measurement: Measurement

    @property
    def relative(self) -> float:
        """Measured time relative to the input's in the same interleaved run (drift cancels)."""
        return 1.0 / self.measurement.speedup

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "program": self.program, "predicted": self.predicted, **self.measurement.to_json()}


@dataclass(frozen=True)
class Tuning:
    """What tuning measured and learned; report.json's ``tuning`` section."""

    trials: tuple[Trial, ...]  # this kernel's measurements, the database's first
    reused: int  # measurements found in the database
    workers: str
    database: str
    calibration: Calibration | None
    tau_model: float | None  # Kendall τ, model cost vs measured time, over the measured trials
    tau_calibrated: float | None  # the same for the calibrated model
    verdict: str  # why the returned schedule was chosen

    def to_json(self) -> dict[str, Any]:
        return {
            "trials": len(self.trials), "reused_from_database": self.reused, "workers": self.workers,
            "database": self.database, "calibration": None if self.calibration is None else self.calibration.to_json(),
            "kendall_tau": {"model": self.tau_model, "calibrated": self.tau_calibrated},
            "verdict": self.verdict, "measurements": [t.to_json() for t in self.trials],
        }  # fmt: skip


def fingerprint(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:20]


def tune(
    proc: Procedure,
    target: str | Target = "cpu",
    *,
    trials: int = DEFAULT_TRIALS,
    workers: int | None = None,
    cluster: str | None = None,
    db: str | Path | None = None,
    budget: Budget = Budget(),
    sizes: Mapping[str, int] | None = None,
    seed: int = 0,
    top_k: int = DEFAULT_TOP_K,
    measure_seconds: float = MEASURE_SECONDS,
    progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> Result:
    """Measure up to ``trials`` candidate schedules of ``proc`` from its e-graph and return the best
    measured one (the input's empty schedule when nothing beat it). ``workers`` local processes
    (default: one per core; 0 measures in this process) or a Dask ``cluster`` address measure;
    every measurement goes to the database ``db`` (default ``~/.cache/exo-egraph/results.db``),
    which a re-run reuses: a kernel with ``trials`` measurements there is not measured again.
    ``budget.seconds`` bounds the whole run; ``progress(phase, done, total)`` is told as it goes."""
    _check_args(trials, workers, measure_seconds)
    tgt = create(target, **options) if isinstance(target, str) else target
    if not isinstance(tgt, Tunes):
        raise TypeError(f"tune: target {tgt.name} does not measure candidates (it has no `measure`)")
    tgt = tgt.for_tuning()
    source = kernel_source(proc)
    phases = Phases()
    deadline = Deadline.after(budget.seconds, budget.max_memory_mb)
    path = Path(db) if db is not None else default_path()
    with ResultDB(path) as database:
        machine = Machine.this(tgt.build)
        database.add_machine(machine)
        key = _Key(_kernel_key(proc, sizes), proc.name(), _target_key(tgt), machine.fingerprint)
        run = _Run(tgt, proc, source, key, database, sizes, measure_seconds, progress, phases)
        with phases("lower"):
            run.problem = tgt.prepare(proc, sizes)
        run.measured_at = tgt.run_sizes(run.problem, sizes)
        run.load()
        stop, stats, unsound = StopReason.SATURATED, None, ()
        if run.needed(trials):
            with phases("saturate"):
                # saturation gets a share of the run: the rest is for measuring what it holds
                share = replace(budget, seconds=budget.seconds * SATURATION_SHARE)
                saturated = tgt.saturate(run.problem, share, _saturation_progress(progress),
                                         Deadline.after(share.seconds, budget.max_memory_mb))  # fmt: skip
            stats, stop = saturated.stats, saturated.stats.stop_reason
            stop, unsound = run.search(saturated, trials, workers, cluster, deadline, random.Random(seed), stop)
            if stop is not StopReason.INTERRUPTED:
                with phases("measure"):
                    stop = run.confirm(CONFIRM, stop)
        return run.result(stats, stop, unsound, top_k, workers, cluster, path)


@dataclass(frozen=True)
class _Key:
    kernel: str
    kernel_name: str
    target: str
    machine: str


def _kernel_key(proc: Procedure, sizes: Mapping[str, int] | None) -> str:
    """The kernel as Exo reads it (its LoopIR, printed) and the sizes it runs at: an edit elsewhere
    in its file does not make earlier measurements stale."""
    return fingerprint((str(proc), sorted((sizes or {}).items())))


def _target_key(tgt: Any) -> str:
    return "+".join([tgt.name, *(f"{k}={v}" for k, v in sorted(tgt.options.items()))])


@dataclass
class _Run:
    """One tuning run's state: what is measured so far and the model as it learns."""

    tgt: Any
    proc: Procedure
    source: KernelSource
    key: _Key
    database: ResultDB
    sizes: Mapping[str, int] | None  # as given (``--sizes``): what the model prices at
    measure_seconds: float
    progress: Callable[[str, int, int], None] | None
    phases: Phases
    problem: Any = None
    trials: list[Trial] = field(default_factory=list)
    reused: int = 0
    calibration: Calibration | None = None
    written: list[Pick] = field(default_factory=list)  # the model as written's ranking: it never changes
    measured_at: Mapping[str, int] | None = None  # the sizes candidates run at (`Target.run_sizes`)

    @property
    def measured(self) -> set[str]:
        return {t.program for t in self.trials}

    @cached_property
    def input_program(self) -> str:
        """The input's program fingerprint (asked every round; the input does not change)."""
        return fingerprint(self.tgt.program(self.problem, None))

    def load(self) -> None:
        """This kernel's earlier measurements, and the model fitted to every one on this machine."""
        for r in self.database.records(kernel=self.key.kernel, target=self.key.target, machine=self.key.machine):
            self.trials.append(Trial("database", r.program, r.script, r.predicted, r.features, r.measurement))
        self.reused = len(self.trials)
        self.refit()

    def needed(self, trials: int) -> bool:
        return self.input_program not in self.measured or len(self.trials) < trials

    def refit(self) -> None:
        rows = self.database.records(target=self.key.target, machine=self.key.machine)
        self.calibration = fit(calibration_rows(rows))

    def search(
        self, saturated: Any, trials: int, workers: int | None, cluster: str | None, deadline: Deadline,
        rng: random.Random, stop: StopReason,
    ) -> tuple[StopReason, tuple[str, ...]]:
        """Rounds of pick → replay → measure → record → refit until ``trials`` are measured, the
        e-graph has no unmeasured program left, or the deadline; Ctrl-C stops with what is recorded."""
        unsound: list[str] = []
        try:
            with pool_for(workers, cluster) as pool:
                per_round = max(2, 2 * (workers if workers else os.cpu_count() or 1))
                while len(self.trials) < trials or self.input_program not in self.measured:
                    if deadline.passed():
                        return StopReason.TIME, tuple(unsound)
                    with self.phases("extract"):
                        picks = self.pick(saturated, min(per_round, trials - len(self.trials)) or 1, rng, deadline)
                    if not picks:
                        break  # every program the e-graph holds (that the picks reach) is measured
                    tasks, pending = [], {}
                    with self.phases("replay"):
                        for origin, pick in picks:
                            try:
                                script = "" if pick is None else self.tgt.replay(self.problem, pick).script
                            except ReplayError as e:
                                unsound.append(str(e))
                                continue
                            task = self._task(script)
                            tasks.append(task)
                            pending[task] = (origin, pick)
                    with self.phases("measure"):
                        for task, m in pool.run(tasks):
                            self.record(*pending[task], task.script, m)
                    self.refit()
        except KeyboardInterrupt:
            return StopReason.INTERRUPTED, tuple(unsound)
        except TimeUp as e:
            return e.reason, tuple(unsound)
        return stop, tuple(unsound)

    def pick(self, saturated: Any, want: int, rng: random.Random, deadline: Deadline) -> list[tuple[str, Pick | None]]:
        """``want`` unmeasured candidates: the input first if it is not measured, then the cheapest
        under the calibrated model and under the model as written, in turn (so ``tune`` measures
        what ``explore`` would pick, even when the calibration disagrees), then random members of
        the e-graph, half of them the current model's favourites among the draws."""
        out: list[tuple[str, Pick | None]] = []
        seen = set(self.measured)
        if self.input_program not in seen:
            out.append(("input", None))
            seen.add(self.input_program)
        rankings = [("model", self.tgt, self.problem)]
        if self.calibration is not None:
            calibrated = self.tgt.calibrated(self.calibration)
            rankings.insert(0, ("calibrated", calibrated, calibrated.prepare(self.proc, self.sizes)))
        exploit = math.ceil(want * EXPLOIT)
        k = len(seen) + exploit
        if len(self.written) < k:  # extracted once, and again only when the run has used it up
            self.written = self.tgt.extract(self.problem, saturated, max(k, 2 * len(self.written), WRITTEN_K), deadline)
        streams = [(origin, iter(self.written if tgt is self.tgt else tgt.extract(problem, saturated, k, deadline)))
                   for origin, tgt, problem in rankings]  # fmt: skip
        while len(out) < exploit and streams:
            for origin, stream in list(streams):
                pick = next((p for p in stream if self._new(p, seen)), None)
                if pick is None:
                    streams.remove((origin, stream))
                elif len(out) < exploit:
                    out.append((origin, pick))
        _, model, problem = rankings[0]
        drawn = [model.sample(problem, saturated, rng) for _ in range(SAMPLES)]
        drawn = [p for p in drawn if self._new(p, seen, mark=False)]
        favourites = sorted(drawn, key=lambda p: p.cost)
        for i in range(len(drawn)):
            if len(out) >= want:
                break
            pick = favourites[i // 2] if i % 2 == 0 else rng.choice(drawn)
            if self._new(pick, seen):
                out.append(("explore", pick))
        return out

    def _new(self, pick: Pick, seen: set[str], mark: bool = True) -> bool:
        program = fingerprint(self.tgt.program(self.problem, pick))
        if program in seen:
            return False
        if mark:
            seen.add(program)
        return True

    def record(self, origin: str, pick: Pick | None, script: str, m: Measurement) -> None:
        program = fingerprint(self.tgt.program(self.problem, pick))
        trial = Trial(origin, program, script, self.tgt.priced(self.problem, pick), self.tgt.features(self.problem, pick), m)
        self.trials.append(trial)
        self._store(trial)
        if self.progress is not None:
            self.progress("measure", len(self.trials), 0)

    def _store(self, trial: Trial) -> None:
        self.database.record(Record(
            self.key.kernel, self.key.kernel_name, self.key.target, self.key.machine,
            hashlib.sha256(trial.script.encode()).hexdigest()[:20], trial.program, trial.script, trial.predicted,
            trial.features, trial.measurement, time.time(),
        ))  # fmt: skip

    def _task(self, script: str) -> MeasureTask:
        options, sizes = tuple(sorted(self.tgt.options.items())), tuple(sorted((self.measured_at or {}).items()))
        return MeasureTask(self.source, script, self.tgt.name, options, sizes, self.measure_seconds)

    def confirm(self, count: int, stop: StopReason) -> StopReason:
        """Measure the ``count`` fastest again, one at a time in this process: measured side by side
        with other workers, on a machine with as many cores as workers, ratios scatter and a lucky
        one can look best. The new measurement replaces the old, in the run and in the database."""
        ranked = sorted((t for t in self.trials if t.measurement.ok and t.script), key=lambda t: -t.measurement.speedup)
        try:
            for trial in ranked[:count]:
                again = run_task(self._task(trial.script))
                if again.ok is None:
                    continue
                index = self.trials.index(trial)
                self.trials[index] = replace(trial, origin=f"{trial.origin}, confirmed", measurement=again)
                self._store(self.trials[index])
        except KeyboardInterrupt:
            return StopReason.INTERRUPTED
        return stop

    def best(self) -> tuple[Trial | None, str]:
        """The fastest measured schedule that beats the input by more than its noise, and why."""
        ok = [t for t in self.trials if t.measurement.ok and t.script]
        if not ok:
            return None, "nothing measured ran correctly besides the input: the input is returned"
        wins = [t for t in ok if t.measurement.speedup > 1.0 + _noise(t.measurement)]
        if not wins:
            top = max(ok, key=lambda t: t.measurement.speedup).measurement
            return None, (f"no schedule beat the input by more than the noise (best {top.speedup:.2f}x, "
                          f"spread {_noise(top):.1%}): the input is returned")  # fmt: skip
        best = max(wins, key=lambda t: t.measurement.speedup)
        m = best.measurement
        return best, f"fastest of {len(ok)} measured schedules: {m.speedup:.2f}x the input, spread {_noise(m):.1%}"

    def result(
        self, stats: Any, stop: StopReason, unsound: tuple[str, ...], top_k: int, workers: int | None,
        cluster: str | None, path: Path,
    ) -> Result:
        best, verdict = self.best()
        ranked = sorted((t for t in self.trials if t.measurement.ok and t.script), key=lambda t: -t.measurement.speedup)
        chosen = ([best] if best else []) + [t for t in ranked if t is not best][: top_k - 1 if best else 0]
        with self.phases("replay"):
            candidates = tuple(self._candidate(t) for t in chosen) or (self._input(),)
        measured = [t for t in self.trials if t.measurement.ok and t.predicted is not None]
        tau_model = tau_cal = None
        if len(measured) > 1:
            rel = [t.relative for t in measured]
            tau_model = kendall_tau([t.predicted for t in measured], rel)
            if self.calibration is not None:
                tau_cal = kendall_tau([self.calibration.predict(t.features) for t in measured], rel)
        if cluster:
            workers_text = cluster
        else:
            workers_text = "this process" if workers == 0 else f"{workers or os.cpu_count()} local processes"
        tuning = Tuning(tuple(self.trials), self.reused, workers_text, str(path), self.calibration, tau_model,
                        tau_cal, verdict)  # fmt: skip
        validation = best.measurement if best else self._input_measurement()
        naive = self.tgt.priced(self.problem, None)
        notes = tuple(getattr(self.problem, "notes", ()))
        return Result(self.proc.name(), self.tgt.name, self.tgt.cost_unit, stats, naive, candidates, validation,
                      tuple({} for _ in candidates), stop, unsound, notes, tuning=tuning,
                      phases=dict(self.phases.seconds), peak_rss_mb=peak_rss_mb(), build=self.tgt.build)  # fmt: skip

    def _candidate(self, trial: Trial) -> Candidate:
        scheduled = apply_script(self.proc, trial.script)  # Exo re-checks every step
        cost = trial.predicted if trial.predicted is not None else math.nan
        return Candidate(cost, Pick(cost, None, {"measured": trial.measurement.to_json()}),
                         Replayed(scheduled, (), trial.script, None))  # fmt: skip

    def _input(self) -> Candidate:
        from .api import unscheduled

        return unscheduled(self.proc, self.tgt.priced(self.problem, None))

    def _input_measurement(self) -> Measurement | None:
        mine = [t for t in self.trials if not t.script and t.measurement.ok is not None]
        return mine[-1].measurement if mine else None


def calibration_rows(records: list[Record]) -> list[Row]:
    """The database's correct, timed measurements as rows to fit."""
    return [Row(r.features, 1.0 / r.measurement.speedup, r.measurement.naive, r.kernel, r.predicted or 0.0)
            for r in records if r.measurement.ok and r.measurement.median > 0]  # fmt: skip


def _noise(m: Measurement) -> float:
    """How far from the input a measurement can land by chance: its round-by-round ratio spread."""
    return m.spread


def saved_calibration(target: Any, db: str | Path) -> Calibration | None:
    """The model of ``target`` fitted to every measurement of it on this machine in ``db``."""
    with ResultDB(Path(db)) as database:
        machine = Machine.this(target.build).fingerprint
        rows = database.records(target=_target_key(target), machine=machine)
    return fit(calibration_rows(rows))


def _saturation_progress(progress: Callable[[str, int, int], None] | None) -> Callable[[Iteration], None] | None:
    if progress is None:
        return None
    return lambda it: progress("saturate", it.index, it.enodes)


def _check_args(trials: Any, workers: Any, measure_seconds: Any) -> None:
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise TypeError(f"tune: trials must be a positive int, not {trials!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise TypeError(f"tune: workers must be a non-negative int, not {workers!r}")
    if not isinstance(measure_seconds, (int, float)) or not measure_seconds > 0:
        raise TypeError(f"tune: measure_seconds must be positive, not {measure_seconds!r}")
