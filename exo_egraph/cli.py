"""Command line: ``exo-egraph explore FILE.py[::PROC] --target cpu --out DIR``, ``exo-egraph tune ...``
(measured), ``exo-egraph db list|show|export`` and ``exo-egraph check-rules [--examples N] ...``.

Exit codes mean one thing each (`EXIT_CODES`); bad input gets one line on stderr, never a traceback,
and is found before any work.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Callable

from exo import Procedure

from .api import DEFAULT_TOP_K, Result, exit_code, explore
from .measure import kernel_source
from .lower import Unsupported
from .output import OutDir, OutputError
from .report import text_table
from .saturate import Budget, BudgetError, Iteration
from .script import ReplayError
from .target import Target, Tunes, create
from .target import names as target_names
from .tuning import DEFAULT_TRIALS, TUNE_SECONDS, saved_calibration, tune

EXIT_CODES = """exit codes:
  0    success: a schedule and its report were written (a budget stop is a success; the report says why it stopped)
  1    a late failure (validation could not run): the schedule and report were written, the failure recorded
  2    bad input or an unsupported kernel: one line says what, before any work
  3    soundness failure: Exo rejected a step the rules allowed, or the schedule computed something else
  130  interrupted (Ctrl-C or SIGTERM): the best schedule so far and its report were written
       (nothing, when interrupted before the search began)"""

CHECK_EXIT_CODES = """exit codes:
  0    every rule held every property, and showed its effect in at least half of its examples
  1    no property failed, but some rule showed its effect too rarely to have been checked
  2    bad input: one line says what
  3    soundness failure: a property failed (the shrunk example is printed)
  130  interrupted"""


# the command-line flag of each `Budget` limit, to name it in a bad value's one line
BUDGET_FLAGS = {"seconds": "--budget-s", "max_memory_mb": "--max-memory", "node_limit": "--node-limit", "iterations": "--iterations"}


class InputError(Exception):
    """Bad input: reported as one line, exit code 2."""


def load_module(path: Path) -> dict[str, object]:
    """What an ordinary Python file defines, imported as ``python FILE.py`` would (its folder on the path).

    What the file prints while it imports goes to stderr, and the streams are put back after it:
    Exo's own examples print their schedules at import, and one silences ``sys.stdout`` when not
    run as ``__main__``, which would swallow this command's report."""
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    module_name = _module_name(path)
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # the kernel may import its neighbours
    streams = sys.stdout, sys.stderr
    try:
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # Exo's parser looks the module up while it runs
        sys.stdout = sys.stderr
        loader.loader.exec_module(module)
    except Exception as e:
        raise InputError(f"{path} failed to import: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
        sys.stdout, sys.stderr = streams
        if added:
            sys.path.remove(folder)
    return vars(module)


def load_procs(path: Path) -> dict[str, Procedure]:
    """The (non-instruction) procs an ordinary Python file defines, by name."""
    return {k: v for k, v in load_module(path).items() if isinstance(v, Procedure) and not v.is_instr()}


def _module_name(path: Path) -> str:
    return f"_exo_egraph_user_{path.stem}_{abs(hash(path.resolve()))}"


def numpy_reference(spec: str, proc: Procedure):
    """The kernel file's numpy reference for ``proc``: ``REFERENCES[name]``, when it defines one."""
    module = sys.modules.get(_module_name(Path(spec.partition("::")[0])))
    return getattr(module, "REFERENCES", {}).get(proc.name())


def load_proc(spec: str) -> Procedure:
    """The proc named by ``FILE.py::PROC`` (or the only proc of ``FILE.py``)."""
    file, _, name = spec.partition("::")
    defined = load_module(Path(file))
    procs = {k: v for k, v in defined.items() if isinstance(v, Procedure) and not v.is_instr()}
    if name:
        if name not in procs:
            known = ", ".join(sorted(procs)) or "none"
            if isinstance(defined.get(name), Procedure):
                raise InputError(f"{name} in {file} is an @instr (an instruction to select, not a kernel to schedule)")
            if name in defined:
                what = type(defined[name]).__name__
                raise InputError(f"{name} in {file} is a {what}, not an Exo @proc (procs: {known})")
            raise InputError(f"no proc named {name} in {file} (procs: {known})")
        return procs[name]
    if len(procs) != 1:
        known = ", ".join(sorted(procs)) or "none"
        raise InputError(f"{file} defines {len(procs)} procs ({known}); name one as {file}::PROC")
    return next(iter(procs.values()))


def _check_explore_args(args: argparse.Namespace) -> tuple[Budget, dict[str, int] | None]:
    """Every argument checked before any work: one line each."""
    if args.target not in target_names():
        raise InputError(f"unknown target {args.target} (known: {', '.join(target_names())})")
    try:
        budget = Budget(seconds=args.budget_s, node_limit=args.node_limit, iterations=args.iterations,
                        **({"max_memory_mb": args.max_memory} if args.max_memory is not None else {}))  # fmt: skip
    except BudgetError as e:
        raise InputError(f"{BUDGET_FLAGS[e.limit]} {e.reason}") from None
    for flag, value in (("--iterations", args.iterations), ("--top-k", args.top_k)):
        if value < 1:  # the API's Budget(iterations=0) (the input's e-graph alone) is not a search to ask for
            raise InputError(f"{flag} must be at least 1, not {value}")
    if not args.no_validate and shutil.which("gcc") is None:
        raise InputError("gcc is not on PATH: validation compiles the schedule with gcc (install it, or pass --no-validate)")
    return budget, parse_sizes(args.sizes)


def parse_sizes(text: str | None) -> dict[str, int] | None:
    """``--sizes`` text (``M=128,N=64``) as a mapping, or `InputError` naming the part that is not one."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise InputError(f"--sizes takes NAME=N,... with positive integers, not {part!r}")
        out[name.strip()] = int(value)
    return out


FINALIZER_RETRY_S = 0.01  # how soon an interrupt that landed in a finalizer is raised again


def _catch_interrupts() -> None:
    """Ctrl-C and SIGTERM end a run as `KeyboardInterrupt`: the best so far is written, exit 130.
    Also when the run was started with SIGINT ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)


def _interrupt(_signum: int, frame: FrameType | None) -> None:
    # Raised inside a finalizer, the interrupt would be printed and swallowed there (pysmt's Z3
    # converter has a __del__, and Exo's checks drop converters all the time): the run would go on.
    # There, it is raised again a moment later, outside.
    if _in_finalizer(frame):
        signal.signal(signal.SIGALRM, _interrupt)
        signal.setitimer(signal.ITIMER_REAL, FINALIZER_RETRY_S)
        return
    raise KeyboardInterrupt


def _in_finalizer(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


class Progress:
    """Progress of a long phase on stderr: one line rewritten in place on a terminal; in a log or a
    notebook, a plain line at most every `QUIET_SECONDS` (no carriage-return spam)."""

    QUIET_SECONDS = 10.0

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = -self.QUIET_SECONDS
        self.shown = False

    def say(self, text: str) -> None:
        now = time.perf_counter()
        if self.tty:
            print(f"\r  {text}\033[K", end="", file=sys.stderr, flush=True)
            self.shown = True
        elif now - self.last >= self.QUIET_SECONDS:
            print(f"  {text}", file=sys.stderr, flush=True)
            self.last = now

    def saturating(self, it: Iteration) -> None:
        self.say(f"saturating: iteration {it.index}, {it.enodes:,} e-nodes, {it.seconds:.1f} s")

    def phase(self, phase: str, done: int, total: int) -> None:
        if phase == "measure":
            self.say(f"measured {done} schedules")
        elif phase == "saturate":
            self.say(f"saturating: iteration {done}, {total:,} e-nodes")

    def end(self) -> None:
        if self.shown:
            print(file=sys.stderr)
            self.shown = False


def cmd_explore(args: argparse.Namespace) -> int:
    budget, sizes = _check_explore_args(args)
    proc = load_proc(args.kernel)
    target = _target(args)
    if args.calibrated:
        target = _calibrated(target, args.db)

    def run(progress: Progress) -> Result:
        return explore(
            proc,
            target,
            budget=budget,
            top_k=args.top_k,
            validate=not args.no_validate,
            reference=numpy_reference(args.kernel, proc),
            sizes=sizes,
            progress=progress.saturating,
        )

    return _run_and_write(args, proc, run)


def cmd_tune(args: argparse.Namespace) -> int:
    """Measure candidates from the e-graph (`exo_egraph.tuning`); everything checked before any work."""
    budget, sizes = _check_explore_args(args)
    if args.trials < 1:
        raise InputError(f"--trials must be at least 1, not {args.trials}")
    if args.workers is not None and args.workers < 0:
        raise InputError(f"--workers must be 0 (measure in this process) or more, not {args.workers}")
    if args.cluster:
        _check_cluster(args.cluster)
    db_path = _check_db(args.db)
    proc = load_proc(args.kernel)
    target = _target(args)
    if not isinstance(target, Tunes):
        raise InputError(f"target {args.target} cannot be tuned: it does not measure candidates")
    try:
        kernel_source(proc)
    except ValueError as e:
        raise InputError(str(e)) from None

    def run(progress: Progress) -> Result:
        return tune(
            proc, target, trials=args.trials, workers=args.workers, cluster=args.cluster, db=db_path,
            budget=budget, sizes=sizes, seed=args.seed, top_k=args.top_k, progress=progress.phase,
        )  # fmt: skip

    return _run_and_write(args, proc, run)


def _target(args: argparse.Namespace) -> Target:
    options: dict = {"reassociate": True} if args.reassociate else {}
    if args.cflags is not None:
        flags = tuple(shlex.split(args.cflags))
        if not flags or any(not f.startswith("-") for f in flags):
            raise InputError(f"--cflags takes gcc flags such as '-O3 -march=native', not {args.cflags!r}")
        options["cflags"] = flags
    if args.isa is not None:
        options["isa"] = args.isa
    try:
        return create(args.target, **options)
    except (TypeError, Unsupported) as e:
        raise InputError(str(e)) from None


def _calibrated(target: Target, db: str | None) -> Target:
    """``target`` with its model fitted to this machine's measurements in the database."""
    if not isinstance(target, Tunes):
        raise InputError(f"target {target.name} has no model to calibrate")
    path = _check_db(db)
    if not path.is_file():
        raise InputError(f"--calibrated: no result database at {path} (run tune first, or pass --db PATH)")
    calibration = saved_calibration(target, path)
    if calibration is None:
        raise InputError(f"--calibrated: {path} holds too few measurements of target {target.name} on this machine to fit")
    return target.calibrated(calibration)


def _check_db(db: str | None) -> Path:
    """The result database's path, opened once to check it (a corrupt or newer file is one line)."""
    from .db import DatabaseError, ResultDB, default_path

    path = Path(db) if db else default_path()
    if path.exists() and not path.is_file():
        raise InputError(f"--db {path} is not a file")
    if path.is_file():
        try:
            ResultDB(path).close()
        except DatabaseError as e:
            raise InputError(str(e)) from None
    return path


def _check_cluster(address: str) -> None:
    if "://" not in address:
        raise InputError(f"--cluster takes a Dask scheduler address such as tcp://HOST:8786, not {address!r}")
    if importlib.util.find_spec("distributed") is None:
        raise InputError("--cluster needs Dask's distributed: pip install 'exo-egraph[distributed]'")


def _run_and_write(args: argparse.Namespace, proc: Procedure, run: Callable[[Progress], Result]) -> int:
    """Run ``run`` into ``--out``: the folder checked and locked first, the pair written atomically,
    Ctrl-C or SIGTERM ending the run with the best so far; the summary printed."""
    out = OutDir(Path(args.out))
    out.check(proc.name(), force=args.force)
    start = time.perf_counter()
    progress = Progress()
    _catch_interrupts()
    with out.lock():
        out.retire_previous()
        try:
            result = run(progress)
        except KeyboardInterrupt:
            progress.end()
            print("\nexo-egraph: interrupted before any schedule was found; nothing written", file=sys.stderr)
            return 130
        progress.end()
        code = exit_code(result)
        if code == 3 and result.validation is not None and result.validation.ok is False:
            out.write_pair(f"# no schedule: it computed something else ({result.validation.message})\n", result.to_json())
        else:
            out.write_pair(result.script, result.to_json())
    print(text_table(result))
    print(f"  wrote {out.path / 'schedule.py'} and {out.path / 'report.json'} in {time.perf_counter() - start:.1f} s")
    for note in result.notes:
        print(f"  note: {note}")
    if result.stop_reason.budget_reached:
        # a budget stop is a success: the report says why it stopped
        print(f"exo-egraph: stopped early ({result.stop_reason.value}); wrote the best schedule so far", file=sys.stderr)
    for failure in result.replay_failures:
        print(f"exo-egraph: soundness bug: {failure}", file=sys.stderr)
    if result.validation is not None and result.validation.ok is not True:
        print(f"exo-egraph: validation: {result.validation.message}", file=sys.stderr)
    return code


def cmd_check_rules(args: argparse.Namespace) -> int:
    """Check the rules of every registered target that offers checks (`ChecksRules`). The cpu
    target's loop rules keep their bare names (they were the only ones before targets had rules);
    another target's are ``target:rule``, say ``gemmini:stage_mem``. A rule fails when a property
    fails, or when it showed its effect in too few examples to have been exercised."""
    from dataclasses import replace

    from .target import ChecksRules

    if args.examples < 1:
        raise InputError(f"--examples must be at least 1, not {args.examples}")
    bare = "cpu"
    checks = {}
    for target in target_names():
        made = create(target)
        if isinstance(made, ChecksRules):
            checks.update({rule if target == bare else f"{target}:{rule}": c for rule, c in made.rule_checks().items()})
    names = [n.removeprefix(f"{bare}:") for n in args.rules] if args.rules else list(checks)
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise InputError(f"unknown rule {unknown[0]} (known: {', '.join(checks)})")
    reports, line = [], Progress()
    for name in names:
        def progress(done: int, name: str = name) -> None:
            line.say(f"{name}: {done}/{args.examples} examples")

        reports.append(replace(checks[name](args.examples, args.seed, progress), rule=name))
        line.end()
    print(_rules_table(reports))
    for rep in reports:
        if not rep.ok:
            print(f"\n{rep.rule}: {rep.problem}" + (f"\nshrunk example:\n{rep.kernel}" if rep.kernel else ""))
    if any(rep.failure is not None for rep in reports):
        return 3
    return 0 if all(rep.ok for rep in reports) else 1


def cmd_db(args: argparse.Namespace) -> int:
    """Read the result database ``tune`` writes: ``list`` its kernels, ``show`` one kernel's
    measured schedules, ``export --jsonl`` every record. It is never created here: a missing file
    is more likely a wrong --db than an empty database."""
    from .db import DatabaseError, ResultDB, default_path

    path = Path(args.db) if args.db else default_path()
    if not path.is_file():
        raise InputError(f"no result database at {path} (tune writes one; pass --db PATH)")
    try:
        with ResultDB(path) as db:
            if args.action == "export":
                db.export_jsonl(sys.stdout)
                return 0
            kernels = db.kernels()
            if args.action == "list":
                rows = [(k.kernel_name, k.kernel, k.target, str(k.measured), _times(k.best_speedup)) for k in kernels]
                print(_columns(("kernel", "fingerprint", "target", "measured", "best speed-up"), rows))
                return 0
            chosen = [k for k in kernels if k.kernel.startswith(args.kernel) or k.kernel_name == args.kernel]
            if not chosen:
                known = ", ".join(sorted({k.kernel_name for k in kernels})) or "none"
                raise InputError(f"no kernel {args.kernel} in {path} (kernels: {known})")
            for i, k in enumerate(chosen):
                rows = [
                    (
                        r.script_hash[:12], "-" if r.predicted is None else f"{r.predicted:.4g}",
                        f"{r.measurement.median:.4g} {r.measurement.unit}", f"{r.measurement.spread:.1%}",
                        _times(r.measurement.speedup), {True: "ok", False: "WRONG", None: "error"}[r.measurement.ok],
                    )
                    for r in db.records(k.kernel, k.target, k.machine)
                ]  # fmt: skip
                print(("\n" if i else "") + f"{k.kernel_name} {k.kernel} on {k.target} (machine {k.machine})")
                print(_columns(("script", "predicted", "median", "spread", "speed-up", "ok"), rows))
            return 0
    except DatabaseError as e:
        raise InputError(str(e)) from None


def _times(speedup: float | None) -> str:
    return "-" if speedup is None else f"{speedup:.2f}x"


def _columns(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows])


def _rules_table(reports: list) -> str:
    """One row per `RuleReport`: what was checked, how often the rule showed, seconds, the verdict."""
    head = ("rule", "examples", "terms checked", "applications", "applied in", "counts checked", "seconds", "result")
    rows = [
        (
            r.rule, str(r.examples), str(r.terms), str(r.applications), f"{r.applied}/{r.examples}", str(r.counted),
            f"{r.seconds:.1f}", "ok" if r.ok else "FAILED" if r.failure else "FAILED(coverage)",
        )
        for r in reports
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows])


DB_HELP = "the result database of measurements (default: $XDG_CACHE_HOME/exo-egraph/results.db, else ~/.cache/exo-egraph/results.db)"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="exo-egraph",
        description="Equality-saturation scheduling for Exo procs",
        epilog="exit codes: 0 success, 1 a late failure (results written), 2 bad input or an unsupported kernel, "
        "3 soundness failure, 130 interrupted; COMMAND --help says what each means for that command",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)  # what explore and tune share
    common.add_argument("kernel", help="FILE.py::PROC, or FILE.py when it defines one proc")
    common.add_argument("--target", default="cpu", help=f"one of: {', '.join(target_names())}")
    common.add_argument("--out", default="out", help="folder for schedule.py and report.json")
    common.add_argument("--force", action="store_true", help="replace another kernel's results in --out")
    common.add_argument("--max-memory", type=int, default=None, metavar="MB",
                        help=f"stop growing the e-graph before this much resident memory (default: half this machine's, {Budget().max_memory_mb} MB)")
    common.add_argument("--node-limit", type=int, default=Budget().node_limit, help="stop saturating past this many e-graph rows (e-nodes and guard facts)")
    common.add_argument("--iterations", type=int, default=Budget().iterations, help="most saturation iterations")
    common.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="how many best schedules to report")
    common.add_argument("--sizes", metavar="N=128,...", help="values of the proc's size arguments for validation (default 16)")
    common.add_argument("--db", metavar="PATH", help=DB_HELP)
    common.add_argument("--isa", help="x86: the vector ISA to schedule for, avx512 or avx2 (default: this machine's best)")
    common.add_argument("--cflags", metavar="FLAGS", help="gcc flags that validation and timing build with (default: the target's; cpu: '-O2 -fwrapv')")
    common.add_argument(
        "--reassociate",
        action="store_true",
        help="let float += sums change order (faster schedules; results then match within tolerance, not bit-exact)",
    )
    ex = sub.add_parser(
        "explore",
        parents=[common],
        help="explore a proc's schedules under the cost model and write the best one",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("--budget-s", type=float, default=Budget().seconds, help="seconds for the whole run (saturation, extraction, replay, validation)")
    ex.add_argument("--no-validate", action="store_true", help="skip compiling and running")
    ex.add_argument("--calibrated", action="store_true", help="use the cost model fitted to this machine's measurements in --db (tune records them)")
    tu = sub.add_parser(
        "tune",
        parents=[common],
        help="measure candidate schedules from the e-graph and write the fastest measured one",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tu.add_argument("--budget-s", type=float, default=TUNE_SECONDS, help="seconds for the whole run (saturation, measurements)")
    tu.add_argument("--trials", type=int, default=DEFAULT_TRIALS, help="schedules to measure (the database's earlier measurements count)")
    tu.add_argument("--workers", type=int, default=None, help="local measuring processes (default: one per core; 0: in this process)")
    tu.add_argument("--cluster", metavar="ADDRESS", help="measure on a Dask cluster, e.g. tcp://HOST:8786 (needs exo-egraph[distributed])")
    tu.add_argument("--seed", type=int, default=0, help="seed of the exploration's random picks")
    tu.set_defaults(no_validate=False, calibrated=False)
    ck = sub.add_parser(
        "check-rules",
        help="property-test the rewrite rules of every target on random kernels",
        epilog=CHECK_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ck.add_argument("--examples", type=int, default=50, help="random examples (kernels, or kernel and plan) per rule")
    ck.add_argument("--seed", type=int, default=0)
    ck.add_argument("--rules", nargs="+", metavar="NAME", help="rules to check (default: all; a target's other than cpu as TARGET:NAME, say gemmini:stage_mem)")
    db = sub.add_parser("db", help="read the database of measured schedules that tune writes")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--db", metavar="PATH", help=DB_HELP)
    actions = db.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[where], help="one line per kernel, target and machine: records and best speed-up")
    show = actions.add_parser("show", parents=[where], help="a kernel's measured schedules")
    show.add_argument("kernel", help="a kernel's name, or a prefix of its fingerprint")
    export = actions.add_parser("export", parents=[where], help="every record, to stdout")
    export.add_argument("--jsonl", action="store_true", required=True, help="as JSON lines, one record a line")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        commands = {"db": cmd_db, "check-rules": cmd_check_rules, "tune": cmd_tune, "explore": cmd_explore}
        return commands[args.command](args)
    except (InputError, OutputError, Unsupported) as e:
        print(f"exo-egraph: {e}", file=sys.stderr)
        return 2
    except ReplayError as e:
        print(f"exo-egraph: soundness bug: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # before a command caught it (loading the kernel): nothing begun
        print("\nexo-egraph: interrupted before anything was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
