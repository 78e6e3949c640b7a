"""Where the 3x3 convolutions lose on Gemmini, and what interleaving their loads would buy.

    python benchmarks/gemmini_conv_loads.py [--out benchmarks/results/gemmini_conv_loads.md]

ResNet-50's 14x14x256 convolution, as the explorer plans it (weights resident, an input row
double-buffered, a double-buffered accumulator tile per output tile, started from the bias),
replayed through Exo, then edited by hand with Exo's own checked scheduling calls into variants
that move the next output row's input loads earlier in program order. Every variant runs
bit-exact on the Gemmini model; the table gives its cycles and the model's counters of where the
execute controller's idle cycles go (``idle_ex_issue``: its next command not issued yet;
``idle_ex_hazard``: waiting on rows another controller still writes or reads) and how long the
host waited for a free load-station entry (``host_wait_ld``). The load station is in order and
holds 8 commands; the host issues in order. These variants were the prototype of the plan rule
``load_ahead`` (`exo_egraph.rewrites.gemmini.load_ahead_rules`), whose replay of the same plan is
the last row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "kernels"))

import gemmini as kernels  # noqa: E402
from exo import Procedure  # noqa: E402
from exo.stdlib.scheduling import (  # noqa: E402
    cut_loop,
    expand_dim,
    fission,
    fuse,
    lift_alloc,
    reorder_stmts,
    resize_dim,
    shift_loop,
    simplify,
    unroll_loop,
)

from exo_egraph.target import Pick  # noqa: E402
from exo_egraph.targets.gemmini.model import validate_gemmini  # noqa: E402
from exo_egraph.targets.gemmini.plans import PAcc, PLoop, PMac, PStage  # noqa: E402
from exo_egraph.targets.gemmini.target import GemminiTarget  # noqa: E402

NAME = "gemmini_resnet_conv_14x256"
ROWS = 14  # output rows: the loop the input staging alternates across
COUNTERS = ("idle_ex_issue", "idle_ex_hazard", "host_wait_ld")
HOISTED = (
    ("config_ld_acc_i32_vector", ("True",)), ("config_ld_i8_id1", ("stride(inp, 2)",)),
    ("config_ld_i8_id2", ("stride(weights, 2)",)), ("config_matmul", ()),
    ("config_st_acc_i8", ("scale", "stride(output, 2)", "act")),
)  # fmt: skip


def explored_plan(input_buffers: int, ahead: bool = False) -> PLoop:
    """The plan the explorer returned for the kernel before ``load_ahead`` (one run;
    `gemmini_conv.md`), with the input row staged in ``input_buffers`` buffers (``ahead``: the
    next row's loads spread over this row's steps by the rule)."""
    steps = PLoop("krow", 1, 3, PLoop("kch", 16, 16, PLoop("kcol", 1, 3, PMac("do_matmul_acc_i8"))))
    tiles = PLoop("och", 16, 4, PAcc("do_ld_acc_i32_vector", "do_st_acc_i8", steps, 2))
    rows = PLoop("orow", 1, ROWS, PStage("A", "do_ld_i8_block_id1", tiles, input_buffers, ahead))
    return PLoop("och", 64, 4, PStage("B", "do_ld_i8_id2", PLoop("b", 1, 4, rows)))


def move_down(p: Procedure, loop, frm: int, to: int) -> Procedure:
    """Move statement ``frm`` of ``loop``'s body to index ``to`` by adjacent swaps (each checked)."""
    for i in range(frm, to):
        p = reorder_stmts(p, p.forward(loop).body()[i].expand(0, 1))
    return p


def row_ahead(p: Procedure, spread: Callable[[Procedure, object], Procedure] | None = None) -> Procedure:
    """The next row's input loads issued before this row's steps: the staging expanded to a
    buffer per row, its loads split off, the first row's peeled and the rest shifted by one,
    fused with the steps of the row before, then folded back onto two buffers. ``spread``
    rearranges the fused row's body before the fold."""
    p = expand_dim(p, "inp_s", ROWS, "orow")
    p = lift_alloc(p, "inp_s")
    p = fission(p, p.find_loop("orow").body()[0].after())
    p = cut_loop(p, p.find_loop("orow"), 1)
    p = shift_loop(p, p.find_loop("orow #1"), 0)
    p = cut_loop(p, p.find_loop("orow #2"), ROWS - 1)
    p = fuse(p, p.find_loop("orow #1"), p.find_loop("orow #2"))
    if spread is not None:
        p = spread(p, p.find_loop("orow #1"))
    return simplify(resize_dim(p, "inp_s", 0, 2, 0, fold=True))


def kinds(p: Procedure, loop) -> list[str]:
    return [type(s).__name__.removesuffix("Cursor") for s in p.forward(loop).body()]


def three_chunks(p: Procedure, row, after_bias: bool) -> Procedure:
    """The row's 36 loads in three chunks (one per kernel row), each after one output tile:
    after its store (``after_bias`` False) or after the next tile's bias load."""
    p = unroll_loop(p, p.forward(row).body()[0])
    p = unroll_loop(p, p.forward(row).body()[4])  # the output tiles: bias, steps, store each
    assert kinds(p, row) == ["For"] * 3 + ["Alloc"] + ["Call", "For", "Call"] * 4, kinds(p, row)
    final = (7, 10, 13) if after_bias else (4, 8, 12)  # each chunk's index once the others moved
    for chunk in (2, 1, 0):
        p = move_down(p, row, chunk, final[chunk])
    return p


def nine_chunks(p: Procedure, row) -> Procedure:
    """The row's 36 loads in nine chunks of four (the load station holds 8): after each of the
    next three output tiles' bias load and first two kernel-row steps."""
    p = unroll_loop(p, p.forward(row).body()[0])
    for i in (2, 1, 0):
        p = unroll_loop(p, p.forward(row).body()[i])
    p = unroll_loop(p, p.forward(row).body()[10])
    for i in (20, 17, 14):  # the kernel rows of tiles 3, 2, 1
        p = unroll_loop(p, p.forward(row).body()[i])
    tile = ["Call", "For", "For", "For", "Call"]
    assert kinds(p, row) == ["For"] * 9 + ["Alloc", "Call", "For", "Call"] + tile * 3, kinds(p, row)
    anchors = (13, 14, 15, 18, 19, 20, 23, 24, 25)
    for chunk in range(8, -1, -1):
        p = move_down(p, row, chunk, anchors[chunk] - (8 - chunk))
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "results" / "gemmini_conv_loads.md"))
    args = ap.parse_args()
    proc, reference = getattr(kernels, NAME), kernels.REFERENCES[NAME]
    target = GemminiTarget()
    problem = target.prepare(proc)

    def replayed(buffers: int, ahead: bool = False) -> Procedure:
        plan = explored_plan(buffers, ahead)
        return target.replay(problem, Pick(problem.model.cycles(plan, HOISTED), plan, {"hoisted": HOISTED})).proc

    single = replayed(1)
    variants = {
        "explored plan (input row double-buffered)": replayed(2),
        "next row's loads a row ahead": row_ahead(single),
        "... in 3 chunks, each after an output tile": row_ahead(single, lambda p, r: three_chunks(p, r, False)),
        "... in 3 chunks, each after the next tile's bias load": row_ahead(single, lambda p, r: three_chunks(p, r, True)),
        "... in 9 chunks of 4, behind the next tiles' bias loads": row_ahead(single, nine_chunks),
        "the load_ahead rule's replay (a load behind each tile's first channel steps)": replayed(2, True),
    }  # fmt: skip
    lines = [
        f"`{NAME}` on the Gemmini model (decoupled timing), one run; every row bit-exact.",
        "",
        "| schedule | cycles | vs explored | utilization | " + " | ".join(COUNTERS) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(COUNTERS),
    ]
    base = None
    for label, scheduled in variants.items():
        v = validate_gemmini(proc, scheduled, reference=reference)
        assert v.ok and v.exact, (label, v.message)
        base = base or v.cycles
        counters = " | ".join(f"{v.counters[c]:,}" for c in COUNTERS)
        lines.append(f"| {label} | {v.cycles:,} | {v.cycles / base:.3f}x | {v.utilization:.1%} | {counters} |")
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
