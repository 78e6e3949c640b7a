"""The random-kernel strategy users import: every kernel compiles and runs, the features the issue
asks for all turn up, and each rule's shape draws what its rule needs."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, seed, settings

from exo_egraph.testing import RULE_SHAPES, kernels
from exo_egraph.validate import random_inputs, run_many

FOR = re.compile(r"^( *)for ([ijkl]) in seq\(0, (\w+)\):", re.M)


def trips(src: str) -> list[int]:
    return [int(m.group(3)) for m in FOR.finditer(src) if m.group(3).isdigit()]


def test_random_kernels_compile_run_and_cover_the_features():
    seen: dict[str, int] = {}

    @seed(11)
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(kernels())
    def compiles_and_runs(spec):
        proc = spec.proc()
        (outputs,) = run_many([proc], random_inputs(proc, spec.sizes, 0))
        assert outputs  # the C compiled with gcc and ran
        src = spec.source
        depth = max(len(m.group(1)) // 4 for m in FOR.finditer(src))
        features = {
            f"depth {depth}": True,
            "symbolic size": "n: size" in src,
            "if": "if " in src,
            "assign": re.search(r"\] = ", src) is not None,
            "reduce": "+=" in src,
            "intermediate": "tmp0" in src,
            "local alloc": re.search(r"^ {8,}t\d+: ", src, re.M) is not None,
            "1-trip loop": 1 in trips(src),
            "odd trips": any(n % 2 and n > 1 for n in trips(src)),
            # a size no cut factor (2, 3) divides: only a cut divide splits it
            "cut size": any(n > 4 and n % 2 and n % 3 for n in trips(src)),
            **{prec: f": {prec}[" in src for prec in ("i8", "i32", "f32")},
        }
        for name, present in features.items():
            seen[name] = seen.get(name, 0) + bool(present)

    compiles_and_runs()
    for feature in ["depth 2", "depth 3", "depth 4", "symbolic size", "if", "assign", "reduce", "intermediate",
                    "local alloc", "1-trip loop", "odd trips", "cut size", "i8", "i32", "f32"]:  # fmt: skip
        assert seen.get(feature, 0) > 0, f"no generated kernel had: {feature} ({seen})"


def _top_loops(src: str) -> list[str]:
    return [m.group(0).strip() for m in FOR.finditer(src) if len(m.group(1)) == 4]


# what each rule's kernels must have for the rule to apply (checked on the source alone)
NEEDS = {
    "reorder_loops": lambda src: re.search(r"^ {8}for ", src, re.M) is not None,  # a nest of two loops or more
    "divide_loop": lambda src: any(n >= 4 for n in trips(src)),  # a part of 2 on each side, or a cut
    "divide_loop(cut)": lambda src: any(n >= 5 and (n % 2 or n % 3) for n in trips(src)),
    "unroll_loop": lambda src: bool(trips(src)) and max(trips(src)) <= 4,
    "fission": lambda src: any(
        len(re.findall(rf"^ {{{len(m.group(1)) + 4}}}(o\d|if )", src[m.end():], re.M)) >= 2 for m in FOR.finditer(src)
    ),
    "fuse": lambda src: len(_top_loops(src)) >= 2 and len(set(_top_loops(src))) == 1,  # one header, repeated
    "lift_alloc": lambda src: re.search(r"for \w+ in seq\(0, \w+\):\n +t\d+: ", src) is not None,
}


@pytest.mark.parametrize("rule", list(RULE_SHAPES))
def test_each_rule_shape_draws_what_its_rule_needs(rule):
    drawn = []

    @seed(5)
    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(kernels(for_rule=rule))
    def draws(spec):
        drawn.append(spec.source)

    draws()
    fit = sum(map(NEEDS[rule], drawn))
    assert fit >= 0.8 * len(drawn), f"{rule}: {fit} of {len(drawn)} kernels fit\n" + "\n".join(drawn[:3])
