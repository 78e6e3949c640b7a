"""Soundness checks of every rule of every target at scale: ``exo-egraph check-rules`` on ≥ 10⁴ examples.

    python benchmarks/check_rules.py [--examples 10000] [--seed 0] [--jobs 2] [--rules NAME ...]

The examples are shared evenly among the rules (the cpu loop rules and, as ``gemmini:<rule>``,
the Gemmini plan rules); each rule's share runs in chunks of ``--chunk`` examples, each chunk a
seeded hypothesis run of its own, on ``--jobs`` processes. Each finished chunk is appended to
``--log`` (JSON lines), so a stopped sweep resumes where it stopped: chunks that passed are not run
again, a chunk that failed is (after a fix, on the same seed), and the report sums each chunk's
last run, listing failures fixed since. Writes
``benchmarks/results/check_rules.md``: per rule the examples, applications (checked terms that
show the rule; and in how many examples), seconds (summed over its chunks) and the result, the
wall time, and every failure with its (shrunk) example. Exits 1 when any rule failed.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from exo_egraph.checks import RuleReport
from exo_egraph.target import ChecksRules, create, names

ROOT = Path(__file__).resolve().parent
BARE = "cpu"  # its rules keep their bare names, as in the command line
TARGET_EXAMPLES = 10_000


def rule_checks() -> dict[str, Callable[..., RuleReport]]:
    """Every rule check of every registered target, named as ``exo-egraph check-rules`` names them."""
    out: dict[str, Callable[..., RuleReport]] = {}
    for target in names():
        made = create(target)
        if isinstance(made, ChecksRules):
            out.update({r if target == BARE else f"{target}:{r}": c for r, c in made.rule_checks().items()})
    return out


_CHECKS: dict[str, Callable[..., RuleReport]] = {}


def run_chunk(rule: str, examples: int, seed: int) -> RuleReport:
    """One chunk of one rule's examples (in a worker process), reported under the sweep's name for
    the rule: a target reports its rules by their bare names, which two targets can share
    (``reorder_loops``, ``all``), and the log must tell them apart."""
    if not _CHECKS:
        _CHECKS.update(rule_checks())
    return replace(_CHECKS[rule](examples, seed, None), rule=rule)


@dataclass
class Tally:
    """A rule's chunks, summed."""

    rule: str
    chunks: int = 0
    examples: int = 0
    terms: int = 0
    applications: int = 0
    applied: int = 0
    counted: int = 0
    seconds: float = 0.0
    failures: list[tuple[int, str, str | None]] = field(default_factory=list)  # (seed, problem, example)

    def add(self, seed: int, r: RuleReport) -> None:
        self.chunks += 1
        self.examples += r.examples
        self.terms += r.terms
        self.applications += r.applications
        self.applied += r.applied
        self.counted += r.counted
        self.seconds += r.seconds
        if r.failure is not None:
            self.failures.append((seed, r.failure, r.kernel))

    def report(self) -> RuleReport:
        """The whole rule as one report: coverage is judged over all its examples."""
        first = self.failures[0] if self.failures else (0, None, None)
        return RuleReport(
            self.rule, self.examples, self.terms, self.applications, self.applied, self.counted, self.seconds,
            first[1], first[2],
        )  # fmt: skip


def chunks(rule: str, examples: int, size: int, seed: int) -> list[tuple[str, int, int]]:
    """(rule, examples, seed) per chunk: distinct seeds, so chunks draw different examples."""
    out, left, n = [], examples, 0
    while left > 0:
        out.append((rule, min(size, left), seed * 100_003 + n))
        left, n = left - size, n + 1
    return out


@dataclass(frozen=True)
class Logged:
    """A chunk finished in some run of the sweep, as one line of the log."""

    run: str  # the run's start time: a sweep's wall time is the sum of its runs'
    wall: float  # seconds from the run's start to this chunk's end
    seed: int
    report: RuleReport

    def line(self) -> str:
        return json.dumps({"run": self.run, "wall": round(self.wall, 1), "seed": self.seed, **asdict(self.report)})

    @staticmethod
    def parse(line: str) -> "Logged":
        fields = json.loads(line)
        run, wall, seed = fields.pop("run"), fields.pop("wall"), fields.pop("seed")
        return Logged(run, wall, seed, RuleReport(**fields))


def read_log(path: Path) -> list[Logged]:
    """The chunks an earlier run finished (none when there is no log)."""
    if not path.exists():
        return []
    return [Logged.parse(line) for line in path.read_text().splitlines() if line.strip()]


def latest(logged: list[Logged]) -> list[Logged]:
    """Each chunk's last entry: a chunk that failed is run again after a fix, and the re-run counts."""
    last = {(e.report.rule, e.seed): e for e in logged}
    return list(last.values())


def fixed(logged: list[Logged]) -> list[Logged]:
    """Failures that a later run of the same chunk (same seed, so the same examples) passed."""
    passed = {(e.report.rule, e.seed) for e in latest(logged) if e.report.failure is None}
    return [e for e in logged if e.report.failure is not None and (e.report.rule, e.seed) in passed]


def pending(tasks: list[tuple[str, int, int]], logged: list[Logged]) -> list[tuple[str, int, int]]:
    """The chunks (rule, examples, seed) that no earlier run passed: never run, or failed."""
    passed = {(e.report.rule, e.seed) for e in latest(logged) if e.report.failure is None}
    return [task for task in tasks if (task[0], task[2]) not in passed]


def wall_of(logged: list[Logged]) -> float:
    """The sweep's wall time: each run's last chunk's wall, summed over runs."""
    last: dict[str, float] = {}
    for entry in logged:
        last[entry.run] = max(last.get(entry.run, 0.0), entry.wall)
    return sum(last.values())


def markdown(
    tallies: list[Tally], args: argparse.Namespace, wall: float, runs: int = 1, fixed_since: list[Logged] = ()
) -> str:
    total = sum(t.examples for t in tallies)
    reports = [t.report() for t in tallies]
    failed = [r for r in reports if not r.ok]
    lines = [
        "# Rule checks at scale",
        "",
        f"`python benchmarks/check_rules.py --examples {args.examples} --seed {args.seed} --jobs {args.jobs}` "
        f"on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: **{total:,} examples** over {len(tallies)} rules "
        f"in {wall:,.0f} s wall ({sum(t.seconds for t in tallies):,.0f} s of checking on {args.jobs} processes), "
        f"**{len(failed)} failed**" + (f" (in {runs} runs, resumed from the log)." if runs > 1 else "."),
        "",
    ]
    if total and total < TARGET_EXAMPLES:
        per = wall / total
        lines += [
            f"A fraction of {TARGET_EXAMPLES:,} examples: at this rate ({per:.2f} s wall per example, rules "
            f"in the same proportions) {TARGET_EXAMPLES:,} would take about {per * TARGET_EXAMPLES / 3600:.1f} h.",
            "",
        ]
    lines += [
        "An example is a random kernel (cpu: `exo_egraph.testing.kernels(for_rule=...)`; gemmini: a random "
        "tiled matmul or convolution and a plan drawn from its e-graph). *Applications*: checked terms (plans) "
        "that show the rule's effect; *applied in*: examples with at least one — a rule applied in fewer "
        "than half of its examples fails. Seconds are summed over the rule's chunks.",
        "",
        "| rule | examples | terms checked | applications | applied in | counts checked | seconds | s / example | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        result = "ok" if r.ok else "FAILED" if r.failure else "FAILED (coverage)"
        per = r.seconds / r.examples if r.examples else 0.0
        lines.append(
            f"| `{r.rule}` | {r.examples:,} | {r.terms:,} | {r.applications:,} | {r.applied:,} ({r.applied / max(r.examples, 1):.0%}) "
            f"| {r.counted:,} | {r.seconds:,.0f} | {per:.2f} | {result} |"
        )
    for t in tallies:
        for seed, problem, example in t.failures:
            lines += ["", f"## `{t.rule}` failed (chunk seed {seed})", "", "```", problem.strip(), "```"]
            if example:
                lines += ["", "```python", example.strip(), "```"]
        r = t.report()
        if r.failure is None and not r.covered:
            lines += ["", f"## `{t.rule}`: {r.problem}"]
    for e in fixed_since:
        lines += ["", f"## Fixed since: `{e.report.rule}` (chunk seed {e.seed}) failed, then passed when run again",
                  "", "```", (e.report.failure or "").strip(), "```"]  # fmt: skip
        if e.report.kernel:
            lines += ["", "```python", e.report.kernel.strip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=TARGET_EXAMPLES, help="examples in all, shared evenly among the rules")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--chunk", type=int, default=50, help="examples per hypothesis run")
    ap.add_argument("--rules", nargs="+", metavar="NAME", help="rules to check (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "check_rules.md")
    ap.add_argument("--log", type=Path, default=ROOT / "results" / "check_rules.jsonl",
                    help="finished chunks, appended as they finish; a re-run skips them")  # fmt: skip
    args = ap.parse_args(argv)
    known = rule_checks()
    rules = args.rules or list(known)
    unknown = [r for r in rules if r not in known]
    if unknown:
        print(f"check_rules: unknown rule {unknown[0]} (known: {', '.join(known)})", file=sys.stderr)
        return 2
    per_rule = math.ceil(args.examples / len(rules))
    tasks = [c for r in rules for c in chunks(r, per_rule, args.chunk, args.seed)]
    tasks.sort(key=lambda c: c[2] % 100_003)  # chunk by chunk across the rules: every rule advances
    tallies = {r: Tally(r) for r in rules}
    logged = [e for e in read_log(args.log) if e.report.rule in tallies]
    tasks = pending(tasks, logged)
    rerun = {(rule, seed) for rule, _, seed in tasks}
    for entry in latest(logged):
        if (entry.report.rule, entry.seed) not in rerun:  # a failed chunk counts once, when run again
            tallies[entry.report.rule].add(entry.seed, entry.report)
    run = datetime.now(timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    done = sum(t.examples for t in tallies.values())
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_chunk, *task): task for task in tasks}
        for future in as_completed(futures):
            rule, n, seed = futures[future]
            report = future.result()
            entry = Logged(run, time.perf_counter() - start, seed, report)
            with args.log.open("a") as log:
                log.write(entry.line() + "\n")
            logged.append(entry)
            tallies[rule].add(seed, report)
            done += report.examples
            status = "ok" if report.failure is None else "FAILED"
            print(f"[{entry.wall:7.0f} s] {rule}: chunk of {n} {status} "
                  f"({done:,}/{per_rule * len(rules):,} examples)", file=sys.stderr, flush=True)  # fmt: skip
            write_report([tallies[r] for r in rules], args, logged)  # a stopped sweep's report is current
    print(write_report([tallies[r] for r in rules], args, logged))
    return 0 if all(t.report().ok for t in tallies.values()) else 1


def write_report(tallies: list[Tally], args: argparse.Namespace, logged: list[Logged]) -> str:
    """The report of every chunk the log holds, written to ``args.out`` (whole, then renamed)."""
    text = markdown(tallies, args, wall_of(logged), len({e.run for e in logged}), fixed(logged))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(args.out)
    return text


if __name__ == "__main__":
    sys.exit(main())
