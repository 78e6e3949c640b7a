"""Soundness properties of every rule on random kernels (issue: soundness checks that cover every rule).

Each rule configuration runs `exo_egraph.checks.check_rule` on ``EXO_EGRAPH_EXAMPLES`` random
kernels (default 20) drawn for that rule (`exo_egraph.testing.kernels(for_rule=...)`): extracted
terms (cheapest, most expensive, random, one that shows the rule) replay through Exo,
round-trip, and compute the original's outputs bit for bit; schedule counts match enumeration;
and the rule shows its effect in at least half of the kernels. Raise the variable for long runs.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from exo_egraph import checks
from exo_egraph import ir
from exo_egraph.checks import MIN_APPLIED, RULES, check_rule, enumerate_terms
from exo_egraph.cli import main
from exo_egraph.lower import lower
from exo_egraph.replay import replay
from exo_egraph.rewrites.loops import LoopRuleConfig, loop_rules, perm_band_rules
from exo_egraph.saturate import saturate
from exo_egraph.targets.cpu import CpuTarget
from exo_egraph.terms import Cut, Nest, walk
from exo_egraph.testing import KernelSpec
from exo_egraph.validate import random_inputs, run_many

EXAMPLES = int(os.environ.get("EXO_EGRAPH_EXAMPLES", "12"))  # the sweeps: benchmarks/check_rules.py


@pytest.mark.parametrize("name", list(RULES))
def test_rule_is_sound_on_kernels_drawn_for_it(name: str) -> None:
    # every rule at once saturates the largest e-graphs: fewer of them keep the suite near 10 minutes
    examples = EXAMPLES // 2 if name == "all" else EXAMPLES
    report = check_rule(name, examples, seed=2026)
    assert report.failure is None, f"{report.failure}\nshrunk kernel:\n{report.kernel}"
    assert report.examples == examples
    assert report.terms >= examples  # every kernel contributed at least one replayed term
    # the strategy drawn for the rule exercises it: it shows in at least half of the kernels
    assert report.applied >= MIN_APPLIED * examples, f"applied in {report.applied} of {examples} kernels"
    assert report.ok
    assert report.counted > 0, "no e-graph was small enough to check the count by enumeration"


def test_a_rule_that_never_applies_fails_the_check() -> None:
    """Zero applications prove nothing: the report is a failure though no property failed."""
    never = replace(RULES["fuse"], fuse=False)  # the fuse check with its rule switched off
    report = check_rule("fuse", 3, seed=1, cfg=never)
    assert report.failure is None and report.examples == 3
    assert report.applications == report.applied == 0
    assert not report.covered and not report.ok
    assert report.problem.startswith("coverage:")


def test_check_rules_exits_nonzero_for_a_rule_it_did_not_exercise(monkeypatch, capsys) -> None:
    monkeypatch.setitem(RULES, "fuse", replace(RULES["fuse"], fuse=False))
    assert main(["check-rules", "--examples", "2", "--seed", "1", "--rules", "fuse"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fuse"))
    assert row.split()[-1] == "FAILED(coverage)" and "0/2" in row.split()
    assert "coverage:" in out


def test_check_rules_exits_3_for_a_failed_property_and_2_for_no_examples(monkeypatch, capsys) -> None:
    def failing(examples, seed, progress):  # a fuse check whose bit-exact comparison failed
        return checks.RuleReport("fuse", 1, 2, 2, 1, failure="soundness: output C differs", kernel="@proc ...")

    monkeypatch.setattr(CpuTarget, "rule_checks", lambda self: {"fuse": failing})
    assert main(["check-rules", "--examples", "2", "--rules", "fuse"]) == 3
    assert "soundness: output C differs" in capsys.readouterr().out
    for bad in ("0", "-1"):
        assert main(["check-rules", "--examples", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"exo-egraph: --examples must be at least 1, not {bad}"


def test_the_cpu_target_offers_every_loop_rule_check() -> None:
    assert list(CpuTarget().rule_checks()) == list(RULES)


def unguarded_bands() -> list:
    """A broken rule set for the test below: permutable bands without their dependence guard."""
    return perm_band_rules(independent=lambda body, v: [])


def test_a_reorder_without_its_guard_is_caught() -> None:
    # the kernels drawn for reorder_loops apply it to most, and carry (sometimes) a dependence
    # that forbids it: the missing guard shows
    report = check_rule("reorder_loops", 50, seed=2026, extra_rules=tuple(unguarded_bands()))
    assert report.failure is not None
    assert report.examples < 50  # caught within the budget
    # the shrunk kernel is small enough to read: one proc, a handful of lines
    assert report.kernel is not None and report.kernel.count("\n") < 25
    print(f"caught after {report.examples} kernels: {report.failure.splitlines()[0]}\n{report.kernel}")


# ----------------------------------------------------------------------------- found by these checks

HEAD = "from __future__ import annotations\nfrom exo import proc, DRAM\n\n\n@proc\n"


def every_term_replays(spec: KernelSpec, cfg: LoopRuleConfig, wanted) -> int:
    """Replay every term of the saturated e-graph that ``wanted`` picks; check the round trip and
    the outputs bit for bit. Returns how many terms were replayed."""
    proc = spec.proc()
    original = lower(proc)
    sat = saturate(ir.proc(original), loop_rules(original, cfg), checks.SMALL_BUDGET)
    terms = [x for x in enumerate_terms(sat.view) if wanted(x)]
    done = [replay(proc, x) for x in terms]
    assert all(d.roundtrip for d in done)
    want, *gots = run_many([proc] + [d.proc for d in done], random_inputs(proc, spec.sizes, 0))
    assert all(got[k].tobytes() == v.tobytes() for got in gots for k, v in want.items())
    return len(done)


def has_cut(term) -> bool:
    return any(isinstance(s, Cut) for s in walk(term.body))


def test_a_cut_tail_leaves_the_rest_of_the_proc_as_written() -> None:
    """Replay used to `simplify` the whole proc after a cut divide, turning ``1 * a0[i]`` into
    ``a0[i]`` elsewhere: the round trip broke. Now only the cut's own bounds become literals."""
    spec = KernelSpec("kernel", HEAD + "def kernel(a0: i8[5] @ DRAM, t0: i8[5] @ DRAM):\n"
                      "    for z in seq(0, 5):\n        t0[z] = 0\n    for i in seq(0, 5):\n        t0[i] = 1 * a0[i]\n")  # fmt: skip
    assert every_term_replays(spec, RULES["divide_loop(cut)"], has_cut) > 0


def test_a_cut_nest_whose_header_another_nest_shares_replays() -> None:
    """The 8-trip loop's cut nest (tiles of 3 over 6 trips) shares its header e-class with the
    6-trip loop's nest, so a term may tile those 6 trips by 2, or not at all: replay cuts at 6
    and tiles what is left (it used to divide by the outer stride, covering 8)."""
    spec = KernelSpec("kernel", HEAD + "def kernel(a0: i32[8] @ DRAM, o0: i32[8] @ DRAM, o1: i32[6] @ DRAM):\n"
                      "    for i in seq(0, 8):\n        o0[i] = a0[i] + 1\n"
                      "    for i in seq(0, 6):\n        o1[i] = a0[i] * 2\n")  # fmt: skip
    cfg = replace(RULES["divide_loop(cut)"], cut_factors=(3,))

    def retiled(term) -> bool:  # a tail after a nest that tiles its 6 trips otherwise than the cut by 3
        body = term.body
        return any(
            isinstance(a, Nest) and isinstance(b, Cut) and [(d.stride, d.extent) for d in a.dims] != [(3, 2), (1, 3)]
            for a, b in zip(body, body[1:])
        )

    assert every_term_replays(spec, cfg, retiled) > 0


def test_an_allocation_lifted_out_of_several_loops_replays() -> None:
    """lift_alloc lifts one loop at a time, so a term may hold an allocation several loops out;
    replay used to lift only an allocation that opened the loop right there."""
    spec = KernelSpec("kernel", HEAD + "def kernel(a0: f32[4, 3] @ DRAM, o0: f32[4] @ DRAM):\n"
                      "    for i in seq(0, 4):\n        for j in seq(0, 3):\n            t0: f32[3] @ DRAM\n"
                      "            t0[j] = a0[i, j]\n            o0[i] += t0[j]\n")  # fmt: skip
    top = lambda x: type(x.body[0]).__name__ == "Alloc"  # noqa: E731
    assert every_term_replays(spec, RULES["lift_alloc"], top) > 0
