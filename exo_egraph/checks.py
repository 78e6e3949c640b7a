"""Soundness checks of rewrite rules on random kernels: what ``exo-egraph check-rules`` and the
property tests run.

For one kernel and one rule configuration, `check_kernel` saturates a small e-graph and checks
several of its terms — the cheapest, the most expensive, and random ones (a random e-node in
every e-class):

1. soundness: each replays through Exo and computes the original's outputs, bit for bit
   (float sums keep their order under the default rules, so floats are exact too);
2. guard precision: Exo never rejects a step the rules allowed (a `ReplayError`);
3. round trip: lowering the replayed proc gives the term back;
4. counting: on e-graphs small enough, the exact count equals a brute-force enumeration.

`check_rule` runs that on kernels drawn for one rule (`exo_egraph.testing.kernels` with
``for_rule``, shaped so the rule applies) and reports a `RuleReport`. A report is a failure when
a property failed, and also when the rule showed its effect in fewer than `MIN_APPLIED` of the
examples: a check that does not exercise its rule proves nothing. `run_examples` is the
target-neutral runner (hypothesis draws, tally, shrinking, coverage) that a target's own checks
(`exo_egraph.target.ChecksRules`) use too.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.strategies import SearchStrategy

from exo_egraph.extract.cost import CpuCost, Inverted, buffers_of
from exo_egraph.extract.extractors import extract, sample
from exo_egraph.rewrites.loops import LoopRuleConfig, loop_rules

from . import ir
from . import terms as t
from .lower import lower
from .replay import replay
from .script import ReplayError
from .saturate import Budget, EGraphView, saturate
from .testing import KernelSpec, kernels
from .validate import random_inputs, run_many

_OFF = dict(reorder=False, divide=False, unroll=False, fission=False, fuse=False, lift_alloc=False)
# Random kernels run 1–11 trips: parts of 2 let divide_loop apply to most of them, and cut
# factors of 2 and 3 reach the sizes none divides (5, 7, 11; the default 4, 8, 16 needs 16 trips)
CUT_FACTORS = (2, 3)
_DIVIDE = LoopRuleConfig(**{**_OFF, "divide": True}, min_part=2, cut_factors=CUT_FACTORS)
RULES: dict[str, LoopRuleConfig] = {
    "reorder_loops": LoopRuleConfig(**{**_OFF, "reorder": True}),
    "divide_loop": _DIVIDE,
    "divide_loop(cut)": _DIVIDE,  # the same rules, drawn on sizes only a cut divide splits
    "unroll_loop": LoopRuleConfig(**{**_OFF, "unroll": True}),
    "fission": LoopRuleConfig(**{**_OFF, "fission": True}),
    "fuse": LoopRuleConfig(**{**_OFF, "fuse": True}),
    "lift_alloc": LoopRuleConfig(**{**_OFF, "lift_alloc": True}),
    "all": LoopRuleConfig(min_part=2, cut_factors=CUT_FACTORS),
}
SMALL_BUDGET = Budget(iterations=12, node_limit=20_000, seconds=5.0)
ENUMERATION_LIMIT = 2_000
MIN_APPLIED = 0.5  # a check whose rule shows in fewer of its examples than this exercised too little
SHOW_TRIES = 16  # random terms drawn, at most, to find one that shows the rule under check


class RuleViolation(AssertionError):
    """A property failed: the message says which and how."""


@dataclass
class KernelVerdict:
    terms_checked: int = 0
    uses: dict[str, int] = field(default_factory=dict)  # rule → checked terms that show its effect
    schedules: int = 0
    counted: bool = False  # the exact count was checked against a brute-force enumeration


def check_kernel(
    proc: Any, cfg: LoopRuleConfig, *, sizes: dict[str, int] | None = None, seed: int = 0, random_terms: int = 2,
    extra_rules: tuple = (), show: str | None = None,
) -> KernelVerdict:
    """Run properties 1–4 on one kernel; raise `RuleViolation` on the first failure.

    ``show``: a rule (or ``"all"``) whose effect at least one checked term should show: when the
    cheapest, the most expensive and the random terms do not, up to `SHOW_TRIES` more random
    terms are drawn and the first that does is checked too.
    """
    original = lower(proc)
    sat = saturate(ir.proc(original), loop_rules(original, cfg, extra_rules), SMALL_BUDGET)
    model = CpuCost(buffers_of(original))
    rng = random.Random(seed)
    picks = [extract(sat.view, model)[0].proc, extract(sat.view, Inverted(model))[0].proc]
    picks += [sample(sat.view, rng) for _ in range(random_terms)]
    if show is not None and not any(shows(show, original, p) for p in picks):
        picks += _showing(sat.view, rng, show, original)
    picks = list(dict.fromkeys(picks))
    replayed = []
    for term in picks:
        try:
            done = replay(proc, term)
        except ReplayError as e:
            raise RuleViolation(f"guard precision: Exo rejected a step the rules allowed: {e}") from e
        if not done.roundtrip:
            raise RuleViolation("round trip: the replayed proc does not lower to the extracted term")
        replayed.append(done)
    inputs = random_inputs(proc, sizes, seed)
    want, *gots = run_many([proc] + [d.proc for d in replayed], inputs)
    for done, got in zip(replayed, gots):
        for name, value in want.items():
            if got[name].tobytes() != value.tobytes():  # bit for bit
                raise RuleViolation(f"soundness: output {name} differs after\n{done.script}")
    counted = sat.stats.schedules <= ENUMERATION_LIMIT and sat.stats.cyclic_classes == 0
    if counted:
        found = len(enumerate_terms(sat.view))
        if found != sat.stats.schedules:
            raise RuleViolation(f"counting: dynamic programming says {sat.stats.schedules}, enumeration finds {found}")
    verdict = KernelVerdict(len(picks), {}, sat.stats.schedules, counted)
    for rule in RULES:
        if rule != "all":
            verdict.uses[rule] = sum(uses_rule(rule, original, term) for term in picks)
    return verdict


def _showing(view: EGraphView, rng: random.Random, rule: str, original: t.Proc) -> list[t.Proc]:
    """The first of up to `SHOW_TRIES` random terms that shows ``rule`` (none, if none does)."""
    for _ in range(SHOW_TRIES):
        term = sample(view, rng)
        if shows(rule, original, term):
            return [term]
    return []


@dataclass(frozen=True)
class RuleReport:
    """What a rule's check found over many random examples (kernels, or a target's plans).

    A report is ``ok`` when no property failed *and* the rule showed its effect in at least
    `MIN_APPLIED` of the examples: a check that never exercised its rule proves nothing.
    """

    rule: str
    examples: int  # examples checked before the first failure (all of them when none failed)
    terms: int  # extracted terms (or plans) replayed, compared and round-tripped
    applications: int  # checked terms that show the rule's effect
    applied: int  # examples in which some checked term shows the rule's effect
    counted: int = 0  # examples whose schedule count was checked by enumeration
    seconds: float = 0.0
    failure: str | None = None  # the failed property's message, for the shrunk example
    kernel: str | None = None  # the shrunk example's source

    @property
    def covered(self) -> bool:
        """The rule showed its effect in at least `MIN_APPLIED` of the examples."""
        return self.applied >= MIN_APPLIED * self.examples

    @property
    def ok(self) -> bool:
        return self.failure is None and self.covered

    @property
    def problem(self) -> str | None:
        """Why the report is not ok (a failed property, or too few applications), else None."""
        if self.failure is not None:
            return self.failure
        if not self.covered:
            return (
                f"coverage: the rule showed its effect in {self.applied} of {self.examples} examples "
                f"(at least {MIN_APPLIED:.0%} must), so the check exercised too little"
            )
        return None


@dataclass(frozen=True)
class Outcome:
    """What one example contributed to its rule's report."""

    terms: int  # terms (or plans) replayed and compared
    applications: int  # of those, the ones that show the rule's effect
    counted: bool = False  # the schedule count was checked by enumeration


# A rule's check as a target offers it (`exo_egraph.target.ChecksRules`): (examples, seed, on_example) → report
RuleCheck = Callable[[int, int, Callable[[int], None] | None], RuleReport]


def run_examples(
    rule: str,
    strategy: SearchStrategy,
    check: Callable[[Any], Outcome],
    examples: int,
    seed: int,
    *,
    shrink: bool = True,
    on_example: Callable[[int], None] | None = None,
    describe: Callable[[Any], str] = lambda example: example.source,
) -> RuleReport:
    """Run ``check`` on ``examples`` draws of ``strategy`` (hypothesis, seeded) and tally a `RuleReport`.

    ``check`` raises on a failed property (any exception counts: a violated property, or Exo or
    gcc refusing a replay); the first failure is shrunk by hypothesis (unless ``shrink`` is off)
    and reported with ``describe(example)``, not raised.
    """
    tally = {"examples": 0, "terms": 0, "applications": 0, "applied": 0, "counted": 0}
    failed: dict[str, Any] = {}
    start = time.perf_counter()

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate],
    )
    @given(strategy)
    def holds(example: Any) -> None:
        try:
            outcome = check(example)
        except Exception as e:
            failed.update(kernel=describe(example), failure=_describe(e))  # the last is the shrunk one
            raise
        if not failed:
            tally["examples"] += 1
            tally["terms"] += outcome.terms
            tally["applications"] += outcome.applications
            tally["applied"] += outcome.applications > 0
            tally["counted"] += outcome.counted
            if on_example:
                on_example(tally["examples"])

    try:
        holds()
    except Exception:
        if not failed:
            raise  # hypothesis itself failed (e.g. the strategy): not a verdict on the rule
    seconds = time.perf_counter() - start
    return RuleReport(rule, **tally, seconds=seconds, failure=failed.get("failure"), kernel=failed.get("kernel"))


def check_rule(
    rule: str,
    examples: int = 50,
    seed: int = 0,
    *,
    cfg: LoopRuleConfig | None = None,
    extra_rules: tuple = (),
    shrink: bool = True,
    on_example: Callable[[int], None] | None = None,
    strategy: SearchStrategy | None = None,
) -> RuleReport:
    """Run `check_kernel` on ``examples`` random kernels for ``rule`` (a name of `RULES`).

    ``cfg`` defaults to ``RULES[rule]``; ``extra_rules`` adds rules under test; ``strategy``
    defaults to ``kernels(for_rule=rule)``, kernels shaped so that the rule applies to most.
    """
    cfg = cfg if cfg is not None else RULES[rule]
    strategy = strategy if strategy is not None else kernels(for_rule=rule)

    def check(spec: KernelSpec) -> Outcome:
        verdict = check_kernel(spec.proc(), cfg, sizes=spec.sizes, seed=seed, extra_rules=extra_rules, show=rule)
        applications = sum(n for r, n in verdict.uses.items() if rule == "all" or r == rule)
        return Outcome(verdict.terms_checked, applications, verdict.counted)

    return run_examples(rule, strategy, check, examples, seed, shrink=shrink, on_example=on_example)


def loop_rule_checks() -> dict[str, RuleCheck]:
    """Every check of `RULES`, by name: what the cpu target offers ``check-rules``."""
    return {name: partial(_check_named, name) for name in RULES}


def _check_named(rule: str, examples: int, seed: int, on_example: Callable[[int], None] | None = None) -> RuleReport:
    return check_rule(rule, examples, seed, on_example=on_example)


def _describe(e: Exception) -> str:
    return str(e) if isinstance(e, RuleViolation) else f"{type(e).__name__}: {e}"


def enumerate_terms(view: EGraphView) -> set:
    """Every distinct term the root e-class holds, built one by one (for small e-graphs only)."""
    memo: dict[str, list] = {}

    def terms_of(c: str) -> list:
        if c not in memo:
            out = []
            for nid in view.classes[c]:
                op, kids = view.nodes[nid]
                combos: list[list] = [[]]
                for k in kids:
                    combos = [prefix + [x] for prefix in combos for x in terms_of(k)]
                out.extend(ir.decode(op, args) for args in combos)
            memo[c] = out
        return memo[c]

    return set(terms_of(view.root))


def shows(rule: str, original: t.Proc, term: t.Proc) -> bool:
    """Whether ``term`` shows the effect of ``rule``, or for ``"all"`` of any rule."""
    if rule == "all":
        return any(uses_rule(r, original, term) for r in RULES if r != "all")
    return uses_rule(rule, original, term)


def uses_rule(rule: str, original: t.Proc, term: t.Proc) -> bool:
    """Whether ``term`` shows the effect of ``rule`` relative to the lowered ``original``."""
    nests = [s for s in t.walk(term.body) if isinstance(s, t.Nest)]
    match rule:
        case "reorder_loops":
            order = {s.var: n for n, s in enumerate(t.walk(original.body)) if isinstance(s, t.Loop)}
            return any(
                [d.var for d in n.dims] != sorted((d.var for d in n.dims), key=lambda v: order.get(v, 0))
                for n in nests
            )
        case "divide_loop":
            return any(len(n.dims) > len(t.loop_vars_of(n)) for n in nests) or any(
                isinstance(s, t.Cut) for s in t.walk(term.body)
            )
        case "divide_loop(cut)":
            return any(isinstance(s, t.Cut) for s in t.walk(term.body))
        case "unroll_loop":
            return any(d.unrolled for n in nests for d in n.dims)
        case "fission":
            return _loop_count(term.body) > _loop_count(original.body)
        case "fuse":
            return _loop_count(term.body) < _loop_count(original.body)
        case "lift_alloc":
            return _alloc_depths(term.body) != _alloc_depths(original.body)
    raise KeyError(rule)


def _loop_count(block: t.Block) -> int:
    """Loops as written, with a nest counted as its original loops (so splits don't count)."""
    return sum(
        len(t.loop_vars_of(s)) if isinstance(s, t.Nest) else 1
        for s in t.walk(block)
        if isinstance(s, (t.Loop, t.Nest))
    )


def _alloc_depths(block: t.Block, depth: int = 0) -> tuple:
    out: list = []
    for s in block:
        if isinstance(s, t.Alloc):
            out.append((s.name, depth))
        for inner in t.blocks_of(s):  # a loop of any kind is one level deeper; an if is not
            out.extend(_alloc_depths(inner, depth + (not isinstance(s, t.If))))
    return tuple(sorted(out))
