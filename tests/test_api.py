"""The whole line on the shipped kernels: lower round-trips, explore replays and validates,
and random members of each e-graph (not only the cheapest) replay and compute the same outputs."""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exo import Procedure

from exo_egraph import explore
from exo_egraph.cli import load_procs
from exo_egraph import terms as t
from exo_egraph.lower import lower
from exo_egraph.replay import replay
from exo_egraph.saturate import Budget
from exo_egraph.targets.cpu import saturate_term
from exo_egraph.validate import validate_cpu
from exo_egraph.extract.cost import CpuCost, buffers_of, program_cost
from exo_egraph.rewrites.loops import LoopRuleConfig
from exo_egraph.extract.extractors import extract, sample

KERNELS = Path(__file__).resolve().parent.parent / "benchmarks" / "kernels"


@lru_cache(maxsize=None)
def shipped() -> dict[str, Procedure]:
    return {k: v for file in sorted(KERNELS.glob("*.py")) if not file.name.startswith("gemmini") for k, v in load_procs(file).items()}


def test_every_shipped_kernel_round_trips_through_lowering_and_the_egraph():
    assert {"matmul_f32_128", "matmul_i8_128", "gemv_f32_128", "conv1d_f32", "blur2d_f32"} <= set(shipped())
    for name, proc in shipped().items():
        term = lower(proc)
        assert t.materialize(term) == term, name
        (only,) = extract(saturate_term(term, budget=Budget(iterations=0)).view, CpuCost(buffers_of(term)))
        assert only.proc == term, name
        assert replay(proc, only.proc).steps == ()  # nothing to do: the proc is its own schedule


SMALL = ("matmul_i8_16", "conv1d_i8", "blur2d_f32", "scale_add_f32", "gemv_f32_128")


@lru_cache(maxsize=None)
def _saturated(name: str):
    return saturate_term(lower(shipped()[name]), budget=Budget(node_limit=20_000))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(kernel=st.sampled_from(SMALL), seed=st.integers(0, 2**32 - 1))
def test_random_members_of_the_egraph_replay_and_agree(kernel: str, seed: int):
    proc = shipped()[kernel]
    term = sample(_saturated(kernel).view, random.Random(seed))
    done = replay(proc, term)
    assert done.roundtrip
    verdict = validate_cpu(proc, done.proc, require_exact=False, time_runs=False)
    assert verdict.ok, verdict.message
    if kernel.endswith("i8"):
        assert verdict.exact


def test_explore_finds_a_cheaper_schedule_that_validates():
    result = explore(shipped()["matmul_i8_16"], top_k=3)
    assert result.cost < result.naive_cost
    assert all(c.replayed.roundtrip for c in result.candidates)
    assert [c.cost for c in result.candidates] == sorted(c.cost for c in result.candidates)
    assert result.validation.ok and result.validation.exact
    assert "def schedule(p):" in result.script
    # the script runs stand-alone on the original proc and gives the same proc
    env: dict = {}
    exec(result.script, env)
    again = env["schedule"](shipped()["matmul_i8_16"])
    assert lower(again) == lower(result.proc)


def test_explore_rejects_an_unknown_target():
    with pytest.raises(ValueError):
        explore(shipped()["matmul_i8_16"], target="tpu")


def test_one_price_for_one_program_on_every_shipped_kernel():
    """The naive cost and every candidate's cost come from one function, `program_cost` of the
    plain-loop program: the input as lowered, and each candidate as Exo actually scheduled it."""
    for name, proc in shipped().items():
        result = explore(proc, budget=Budget(node_limit=4_000, seconds=5), top_k=2, validate=False)
        model = CpuCost(buffers_of(lower(proc)))
        assert result.naive_cost == program_cost(model, lower(proc)), name
        for c in result.candidates:
            assert c.cost == pytest.approx(program_cost(model, lower(c.proc)), rel=1e-9), name
        assert result.cost <= result.naive_cost, name


def test_explore_checks_argument_types():
    proc = shipped()["matmul_i8_16"]
    with pytest.raises(TypeError, match="proc"):
        explore("matmul_i8_16")
    with pytest.raises(TypeError, match="budget"):
        explore(proc, budget=10)
    with pytest.raises(TypeError, match="top_k"):
        explore(proc, top_k=0)
    with pytest.raises(TypeError, match="rules"):
        explore(proc, rules="fast")
    with pytest.raises(TypeError, match="gemmini"):
        explore(proc, "gemmini", rules=LoopRuleConfig())


def test_result_shows_itself_and_serializes_as_report_json():
    result = explore(shipped()["conv1d_i8"], top_k=2)
    report = json.loads(json.dumps(result.to_json()))
    assert report["naive_cost"] == result.naive_cost and report["best"]["cost"] == result.cost
    assert report["best"]["steps"] == [s.render() for s in result.best.replayed.steps]
    assert report["egraph"]["stop_reason"] == result.stats.stop_reason.value
    assert "schedules held" in result._repr_markdown_() and result.script in result._repr_markdown_()
    assert "<table>" in result._repr_html_()


def test_a_schedule_measured_slower_than_the_input_is_never_handed_back():
    from dataclasses import replace as copy_with

    from exo_egraph.targets.cpu import CpuTarget

    class SlowOnThisMachine(CpuTarget):
        """The cpu target, whose validation finds the model's pick at half the input's speed."""

        def validate(self, *args, **kwargs):
            return copy_with(super().validate(*args, **kwargs), speedup=0.5)

    procs = load_procs(KERNELS / "matmul.py")
    result = explore(procs["matmul_i8_16"], SlowOnThisMachine(), budget=Budget(seconds=30))
    assert result.best.replayed.steps == () and result.proc is procs["matmul_i8_16"]  # the input, as written
    assert len(result.candidates) >= 2 and result.candidates[1].replayed.steps  # the slow pick, second
    assert any("0.50x the input's speed" in n for n in result.notes)
