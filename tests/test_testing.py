"""The random-kernel strategy users import: every kernel compiles and runs, and the features
the issue asks for all turn up."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, seed, settings

from exo_egraph.testing import kernels
from exo_egraph.validate import random_inputs, run_many


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
        depth = max(len(m.group(1)) // 4 for m in re.finditer(r"^( *)for [ijkl] in", src, re.M))
        features = {
            f"depth {depth}": True,
            "symbolic size": "n: size" in src,
            "if": "if " in src,
            "assign": re.search(r"\] = ", src) is not None,
            "reduce": "+=" in src,
            "intermediate": "tmp0" in src,
            "local alloc": re.search(r"^ {8,}t\d+: ", src, re.M) is not None,
            **{prec: f": {prec}[" in src for prec in ("i8", "i32", "f32")},
        }
        for name, present in features.items():
            seen[name] = seen.get(name, 0) + bool(present)

    compiles_and_runs()
    for feature in ["depth 2", "depth 3", "depth 4", "symbolic size", "if", "assign", "reduce", "intermediate", "local alloc", "i8", "i32", "f32"]:
        assert seen.get(feature, 0) > 0, f"no generated kernel had: {feature} ({seen})"
