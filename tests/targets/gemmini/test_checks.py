"""The Gemmini plan rules join ``check-rules``: each rule's check replays random plans through Exo,
runs them bit-exact on the Gemmini model in the modeled cycles, exercises its rule, and catches
a rule without its guard."""

from __future__ import annotations

import pytest

from exo_egraph.checks import RuleViolation
from exo_egraph.cli import main
from exo_egraph.targets.gemmini.checks import CHECKS, check_plan_rule, effects, plan_rule_checks
from exo_egraph.targets.gemmini.pattern import initial_plan
from exo_egraph.targets.gemmini.plans import PAcc, PLoop, PMac, PStage
from exo_egraph.targets.gemmini.target import GemminiTarget
from exo_egraph.testing import KernelSpec
from exo_egraph.targets.gemmini import checks

EXAMPLES = 1  # each replays a plan through Exo (seconds): the benchmark runs thousands


@pytest.mark.parametrize("rule", CHECKS)
def test_each_plan_rule_check_passes_and_exercises_its_rule(rule):
    report = check_plan_rule(rule, EXAMPLES, seed=3)
    assert report.failure is None, f"{report.failure}\n{report.kernel}"
    assert report.examples == report.terms == EXAMPLES
    assert report.applied == EXAMPLES  # the targeted draw found a plan that shows the rule
    assert report.ok


def test_the_accumulator_rule_without_its_guard_is_caught():
    """``accumulator_rules(lambda v: [])`` may move the accumulator into a reduction loop."""
    # the kernels vary in layout, stride and reduction too: the misplacement is drawn in about 1 of
    # 10 (seeds 1-5 catch it after 6-14 examples; this one after 6)
    report = check_plan_rule("lift_alloc(acc)", 24, seed=4, unguarded=True)
    assert not report.ok and report.failure is not None
    assert report.examples < 24  # caught within the budget
    assert "plan:" in report.failure and report.kernel is not None  # the plan and kernel to read
    print(f"caught after {report.examples} examples: {report.failure}")


def test_the_initial_plan_shows_no_rule():
    kernel = KernelSpec("mm", checks.matmul_source("mm", N=32, M=48, K=64))
    problem = GemminiTarget().prepare(kernel.proc())
    shown = effects(problem.pattern, problem.model, initial_plan(problem.pattern))
    assert not shown & set(CHECKS)


def test_check_rules_names_the_gemmini_rules_with_their_target(capsys):
    assert list(GemminiTarget().rule_checks()) == list(plan_rule_checks()) == list(CHECKS)
    assert main(["check-rules", "--examples", "1", "--seed", "2", "--rules", "gemmini:divide_loop"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert row.split()[0] == "gemmini:divide_loop" and row.split()[-1] == "ok"
    assert main(["check-rules", "--rules", "divide_loop(acc)"]) == 2  # unknown: one line, exit 2
    assert "unknown rule divide_loop(acc)" in capsys.readouterr().err


def _staged_matmul(**sizes: int):
    """A Gemmini matmul's problem, an instruction choice with plain loads and a zero that does not
    overwrite, and the innermost plan under it: both operands staged, one multiply."""
    problem = GemminiTarget().prepare(KernelSpec("mm", checks.matmul_source("mm", **sizes)).proc())
    model = problem.model
    choice = next(c for c in model.choices() if not {i for _, i in c.instrs} & model.selection.blocks
                  and not model.overwrites(c.instr("zero")))  # fmt: skip
    staged = PStage("A", choice.instr("load_A"), PStage("B", choice.instr("load_B"), PMac(choice.instr("mac"))))
    return problem, choice, staged


def test_double_buffering_past_capacity_is_caught():
    """Double buffering is only storage (always the same values), so its guard is capacity: twice
    the buffer must fit. A footprint that counted one buffer would let this plan through (64
    accumulator tiles, alternating: 2048 rows of 1024); the check catches it on the model."""
    problem, choice, staged = _staged_matmul(N=128, M=256, K=16)
    model = problem.model
    inner = PLoop("i", 16, 8, PLoop("j", 16, 8, staged))

    def plan(buffers: int):
        return PLoop("j", 128, 2, PAcc(choice.instr("zero"), choice.instr("store"), inner, buffers))

    assert model.footprint(plan(1)).fits(model.consts)
    assert not model.footprint(plan(2)).fits(model.consts)  # the guard
    explored = checks.Explored(problem, None, (choice,))
    checks.check_plan(explored, plan(1), choice)  # one buffer: sound
    with pytest.raises(RuleViolation, match="overflow"):
        checks.check_plan(explored, plan(2), choice)


def test_a_script_that_does_not_make_the_replayed_proc_fails_the_round_trip(monkeypatch):
    """The round trip of a plan: the script a user pastes makes the proc the replay made. A replay
    whose script lost its last step (so the pasted script stops short) is caught."""
    from dataclasses import replace

    problem, choice, staged = _staged_matmul(N=32, M=32, K=16)
    plan = PLoop("i", 16, 2, PLoop("j", 16, 2, PAcc(choice.instr("zero"), choice.instr("store"), staged, 1)))
    explored = checks.Explored(problem, None, (choice,))
    checks.check_plan(explored, plan, choice)  # as the replay writes it: the same proc

    def short_script(*args, **kwargs):
        replayed = real_replay(*args, **kwargs)
        lines = replayed.script.rstrip().splitlines()
        last = max(i for i, line in enumerate(lines) if line.strip().startswith("p = "))
        return replace(replayed, script="\n".join(lines[:last] + lines[last + 1 :]) + "\n")

    real_replay = checks.replay_plan
    monkeypatch.setattr(checks, "replay_plan", short_script)
    with pytest.raises(RuleViolation, match="round trip"):
        checks.check_plan(explored, plan, choice)
