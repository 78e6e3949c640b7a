"""The CPU cost model: one price for one program, however the e-graph encoded it."""

from __future__ import annotations

from pathlib import Path

from exo_egraph import terms as t
from exo_egraph.cli import load_procs
from exo_egraph.extract.cost import CpuCost, buffers_of, program_cost
from exo_egraph.extract.extractors import extract
from exo_egraph.lower import lower
from exo_egraph.targets.cpu import saturate_term

KERNELS = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels"


def test_program_cost_prices_an_extracted_schedule_as_the_extractor_did():
    proc = load_procs(KERNELS / "matmul.py")["matmul_i8_16"]
    original = lower(proc)
    model = CpuCost(buffers_of(original))
    best = extract(saturate_term(original).view, model, 3)
    for cand in best:
        assert program_cost(model, t.materialize(cand.proc)) == cand.cost
    assert program_cost(model, original) > best[0].cost
