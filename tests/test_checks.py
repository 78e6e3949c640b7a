"""Soundness properties of every rule on random kernels (issue: property-based soundness).

Each rule configuration runs `exo_egraph.checks.check_rule` on ``EXO_EGRAPH_EXAMPLES`` random
kernels (default 50): extracted terms (cheapest, most expensive, random) replay through Exo,
round-trip, and compute the original's outputs bit for bit; schedule counts match enumeration.
Raise the variable for long runs.
"""

from __future__ import annotations

import os

import pytest
from exo_egraph.checks import RULES, check_rule
from exo_egraph.rewrites.loops import perm_band_rules

EXAMPLES = int(os.environ.get("EXO_EGRAPH_EXAMPLES", "50"))


@pytest.mark.parametrize("name", list(RULES))
def test_rule_is_sound_on_random_kernels(name: str) -> None:
    report = check_rule(name, EXAMPLES, seed=2026)
    assert report.ok, f"{report.failure}\nshrunk kernel:\n{report.kernel}"
    assert report.examples == EXAMPLES
    assert report.terms >= EXAMPLES  # every kernel contributed at least one replayed term
    assert report.applications > 0, "the rule never showed its effect: the property exercised nothing"
    assert report.counted > 0, "no e-graph was small enough to check the count by enumeration"


def unguarded_bands() -> list:
    """A broken rule set for the test below: permutable bands without their dependence guard."""
    return perm_band_rules(independent=lambda body, v: [])


def test_a_reorder_without_its_guard_is_caught() -> None:
    report = check_rule("reorder_loops", EXAMPLES, seed=2026, extra_rules=tuple(unguarded_bands()))
    assert not report.ok
    assert report.examples < EXAMPLES  # caught within the default budget
    # the shrunk kernel is small enough to read: one proc, a handful of lines
    assert report.kernel is not None and report.kernel.count("\n") < 25
    print(f"caught after {report.examples} kernels: {report.failure.splitlines()[0]}\n{report.kernel}")
