"""Command line: ``exo-egraph explore FILE.py[::PROC] --target cpu --out DIR`` and
``exo-egraph check-rules [--examples N] [--seed S] [--rules NAME...]``.

Exit codes mean one thing each (`EXIT_CODES`); bad input gets one line on stderr, never a traceback,
and is found before any work.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import signal
import sys
import time
from pathlib import Path

from exo import Procedure

from .api import DEFAULT_TOP_K, exit_code, explore
from .lower import Unsupported
from .output import OutDir, OutputError
from .report import text_table
from .saturate import Budget, Iteration
from .script import ReplayError
from .target import create
from .target import names as target_names

EXIT_CODES = """exit codes:
  0    success: a schedule and its report were written (a budget stop is a success; the report says why it stopped)
  1    a late failure (validation could not run): the schedule and report were written, the failure recorded
  2    bad input or an unsupported kernel: one line says what, before any work
  3    soundness failure: Exo rejected a step the rules allowed, or the schedule computed something else
  130  interrupted (Ctrl-C or SIGTERM): the best schedule so far and its report were written"""


class InputError(Exception):
    """Bad input: reported as one line, exit code 2."""


def load_module(path: Path) -> dict[str, object]:
    """What an ordinary Python file defines, imported as ``python FILE.py`` would (its folder on the path)."""
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    module_name = _module_name(path)
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # the kernel may import its neighbours
    try:
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # Exo's parser looks the module up while it runs
        loader.loader.exec_module(module)
    except Exception as e:
        raise InputError(f"{path} failed to import: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
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
    except ValueError as e:
        raise InputError(str(e).replace("budget seconds", "--budget-s").replace("budget ", "--").replace("_", "-"))
    if args.top_k < 1:
        raise InputError(f"--top-k must be at least 1, not {args.top_k}")
    if not args.no_validate and shutil.which("gcc") is None:
        raise InputError("gcc is not on PATH: validation compiles the schedule with gcc (install it, or pass --no-validate)")
    return budget, _sizes(args.sizes)


def _sizes(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise InputError(f"--sizes takes NAME=N,... with positive integers, not {part!r}")
        out[name.strip()] = int(value)
    return out


def _stop_on_sigterm(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the run as Ctrl-C does: best so far written, exit 130


def cmd_explore(args: argparse.Namespace) -> int:
    budget, sizes = _check_explore_args(args)
    proc = load_proc(args.kernel)
    options = {"reassociate": True} if args.reassociate else {}
    try:
        target = create(args.target, **options)
    except TypeError as e:
        raise InputError(str(e)) from None
    out = OutDir(Path(args.out))
    out.check(proc.name(), force=args.force)
    start = time.perf_counter()

    def progress(it: Iteration) -> None:
        if sys.stderr.isatty():
            print(f"\r  saturating: iteration {it.index}, {it.enodes:,} e-nodes, {it.seconds:.1f} s", end="", file=sys.stderr)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with out.lock():
        out.retire_previous()
        try:
            result = explore(
                proc,
                target,
                budget=budget,
                top_k=args.top_k,
                validate=not args.no_validate,
                reference=numpy_reference(args.kernel, proc),
                sizes=sizes,
                progress=progress,
            )
        except KeyboardInterrupt:
            print("\nexo-egraph: interrupted before any schedule was found; nothing written", file=sys.stderr)
            return 130
        if sys.stderr.isatty():
            print(file=sys.stderr)
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
    reports = []
    for name in names:
        def progress(done: int, name: str = name) -> None:
            print(f"\r  {name}: {done}/{args.examples} examples", end="", file=sys.stderr)

        reports.append(replace(checks[name](args.examples, args.seed, progress), rule=name))
        print(file=sys.stderr)
    print(_rules_table(reports))
    for rep in reports:
        if not rep.ok:
            print(f"\n{rep.rule}: {rep.problem}" + (f"\nshrunk example:\n{rep.kernel}" if rep.kernel else ""))
    return 0 if all(rep.ok for rep in reports) else 1


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


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="exo-egraph", description="Equality-saturation scheduling for Exo procs")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser(
        "explore",
        help="explore a proc's schedules and write the best one",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("kernel", help="FILE.py::PROC, or FILE.py when it defines one proc")
    ex.add_argument("--target", default="cpu", help=f"one of: {', '.join(target_names())}")
    ex.add_argument("--out", default="out", help="folder for schedule.py and report.json")
    ex.add_argument("--force", action="store_true", help="replace another kernel's results in --out")
    ex.add_argument("--budget-s", type=float, default=Budget().seconds, help="seconds for the whole run (saturation, extraction, replay, validation)")
    ex.add_argument("--max-memory", type=int, default=None, metavar="MB",
                    help=f"stop growing the e-graph before this much resident memory (default: half this machine's, {Budget().max_memory_mb} MB)")
    ex.add_argument("--node-limit", type=int, default=Budget().node_limit, help="stop saturating past this many e-graph rows (e-nodes and guard facts)")
    ex.add_argument("--iterations", type=int, default=Budget().iterations, help="most saturation iterations")
    ex.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="how many best schedules to extract and replay")
    ex.add_argument("--no-validate", action="store_true", help="skip compiling and running")
    ex.add_argument("--sizes", metavar="N=128,...", help="values of the proc's size arguments for validation (default 16)")
    ex.add_argument(
        "--reassociate",
        action="store_true",
        help="let float += sums change order (faster schedules; results then match within tolerance, not bit-exact)",
    )
    ck = sub.add_parser("check-rules", help="property-test the rewrite rules of every target on random kernels")
    ck.add_argument("--examples", type=int, default=50, help="random examples (kernels, or kernel and plan) per rule")
    ck.add_argument("--seed", type=int, default=0)
    ck.add_argument("--rules", nargs="+", metavar="NAME", help="rules to check (default: all; a target's other than cpu as TARGET:NAME, say gemmini:stage_mem)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return cmd_check_rules(args) if args.command == "check-rules" else cmd_explore(args)
    except (InputError, OutputError, Unsupported) as e:
        print(f"exo-egraph: {e}", file=sys.stderr)
        return 2
    except ReplayError as e:
        print(f"exo-egraph: soundness bug: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
