"""Expert hand-written Exo schedules for the Gemmini kernels of ``gemmini.py``.

``HAND_SCHEDULES[name](proc) -> proc`` maps the unscheduled kernel ``name`` to Gemmini code, written
only with ``exo.stdlib.scheduling`` calls, in the spirit of exo's own Gemmini examples.  They set
the bar an automatic schedule has to reach on the serial timing model of
``exo_egraph.targets.gemmini.model`` (cycle costs in its ``include/gemmini_timing.h``).

What every schedule does:

* **Configs once, at the top.**  ``config_ld_i8_id1`` (stride of the A-side operand),
  ``config_ld_i8_id2`` (stride of the B-side operand), ``config_matmul`` and ``config_st_acc_i8``
  are written before anything else; inside the loops only the ``do_*`` instructions run.  The
  store's ``scale`` / ``act`` reads become ``ConfigStore`` reads (``bind_config``) whose in-loop
  writes ``delete_config`` proves redundant after the one at the top.
* **Every input byte moves once.**  The whole A and B (or, when the accumulator cannot hold all
  of C, the block of one of them that the current C block needs) are staged in the scratchpad as
  ``[tiles, tiles, 16, 16]`` buffers; C tiles stay in the accumulator until they are stored.
* **Wide mvins.**  A row of up to four 16x16 tiles comes in with one ``do_ld_i8_block_id*``
  (a mvin costs a fixed latency plus its beats, so four tiles per mvin save three latencies).
  The tiles of one block are 16 scratchpad rows apart, which is where Gemmini puts them.
* **No zero fill.**  The first reduction step of each C tile is ``do_matmul_i8`` (preload without
  the accumulate bit: C = A*B), the rest ``do_matmul_acc_i8``; zeroing an int32 accumulator tile
  costs a mvin of 16 rows x 4 beats, more than the matmul itself.

The variants in ``VARIANTS`` (zero fill instead of the first-step overwrite, one tile per mvin,
the plain one-tile-per-step recipe) exist to measure those choices against the model.
"""

from __future__ import annotations

from typing import Callable

from exo import Procedure
from exo.libs.memories import GEMM_ACCUM, GEMM_SCRATCH
from exo.platforms.gemmini import (
    ConfigLoad,
    ConfigLoad_id1,
    ConfigLoad_id2,
    ConfigMatmul,
    ConfigStore,
    config_ld_i8_id1,
    config_ld_i8_id2,
    config_matmul,
    config_st_acc_i8,
    config_zero,
    do_ld_i8_block_id1,
    do_ld_i8_block_id2,
    do_ld_i8_id1,
    do_ld_i8_id2,
    do_matmul_acc_i8,
    do_matmul_i8,
    do_st_acc_i8,
    do_zero_acc_i32,
    ld_i8,
    matmul_acc_i8,
    st_acc_i8,
    zero_acc_i32,
)
from exo.stdlib.scheduling import (
    BinaryOpCursor,
    ForCursor,
    LiteralCursor,
    SchedulingError,
    bind_config,
    cut_loop,
    delete_config,
    divide_dim,
    divide_loop,
    expand_dim,
    fission,
    fuse,
    lift_alloc,
    rearrange_dim,
    reorder_loops,
    replace,
    set_memory,
    shift_loop,
    simplify,
    stage_mem,
    unroll_loop,
    write_config,
)

__all__ = ["HAND_SCHEDULES", "VARIANTS", "tiled_matmul", "conv3x3", "one_tile_per_step"]

DIM = 16
SP_ROWS = 16384  # scratchpad: 256 KiB of 16 x i8 rows
ACC_ROWS = 1024  # accumulator: 64 KiB of 16 x i32 rows
MAX_BLOCK = 4  # DIM-column blocks per i8 mvin (64-byte DMA rows)


# --------------------------------------------------------------------------------------------
# pieces shared by the schedules
# --------------------------------------------------------------------------------------------


def _const(e) -> int:
    if isinstance(e, LiteralCursor):
        return e.value()
    if isinstance(e, BinaryOpCursor) and e.op() in ("+", "-", "*"):
        a, b = _const(e.lhs()), _const(e.rhs())
        return a + b if e.op() == "+" else a - b if e.op() == "-" else a * b
    raise ValueError("expected a constant size (partial_eval the kernel)")


def _shape(p: Procedure, name: str) -> list[int]:
    for a in p.args():
        if a.name() == name:
            return [_const(e) for e in a.shape()]
    raise ValueError(f"{p.name()} has no argument {name}")


def configs_at_top(p: Procedure, *, a_stride: str, b_stride: str, c_stride: str, zero: bool = False) -> Procedure:
    """Write every Gemmini config once, at the top of ``p``, and make the store step read
    ``ConfigStore`` (as ``do_st_acc_i8`` does).  Done first, while ``p`` is still the plain
    loop nest: Exo's config analysis is then instant (on a proc full of instructions
    ``bind_config`` takes minutes)."""
    # config_st_acc_i8(scale, c_stride, act); scale/act reads inside the loop -> ConfigStore reads
    p = write_config(p, p.body()[0].before(), ConfigStore, "scale", "scale")
    p = write_config(p, p.body()[0].after(), ConfigStore, "dst_stride", c_stride)
    p = write_config(p, p.body()[1].after(), ConfigStore, "act", "act")
    p = bind_config(p, p.find("act == True").lhs(), ConfigStore, "act")
    p = delete_config(p, p.find("ConfigStore.act = _ #1"))  # the top write already holds it
    p = bind_config(p, p.find("acc_scale(_)").args()[2], ConfigStore, "scale")
    p = delete_config(p, p.find("ConfigStore.scale = _ #1"))
    p = replace(p, p.body()[0].expand(0, 2), config_st_acc_i8)
    p = write_config(p, p.body()[0].before(), ConfigMatmul, "done", "True")
    p = replace(p, p.body()[0], config_matmul)
    p = write_config(p, p.body()[0].before(), ConfigLoad_id2, "src_stride", b_stride)
    p = replace(p, p.body()[0], config_ld_i8_id2)
    p = write_config(p, p.body()[0].before(), ConfigLoad_id1, "src_stride", a_stride)
    p = replace(p, p.body()[0], config_ld_i8_id1)
    if zero:  # only the zero-fill variants mvin from address 0 (config id 0, stride 0)
        p = write_config(p, p.body()[0].before(), ConfigLoad, "src_stride", "0")
        p = replace(p, p.body()[0], config_zero)
    return p


def tile_buffer(p: Procedure, name: str, dims: list[int]) -> Procedure:
    """A staged [R, C] (or [.., R, C]) buffer -> [.., R/16, C/16, 16, 16] in the scratchpad: the
    innermost dimension 16 as GEMM_SCRATCH requires, one 16x16 tile per 256 elements."""
    n = len(dims)
    p = divide_dim(p, name, n - 1, DIM)
    p = divide_dim(p, name, n - 2, DIM)
    order = list(range(n - 2)) + [n - 2, n, n - 1, n + 1]
    p = rearrange_dim(p, name, order)
    return set_memory(p, name, GEMM_SCRATCH)


def tile_loads(p: Procedure, name: str, rows: int, cols: int, block, one, max_block: int = MAX_BLOCK) -> Procedure:
    """The nest stage_mem wrote to fill ``name`` (its two innermost loops run over ``rows`` x
    ``cols`` of a tiled buffer) -> one mvin per 16 rows x ``max_block`` tiles."""
    w = max(1, min(max_block, cols // DIM))
    rows_loop = p.find(f"{name} : _").next()
    while isinstance(rows_loop.body()[0], ForCursor) and isinstance(rows_loop.body()[0].body()[0], ForCursor):
        rows_loop = rows_loop.body()[0]
    cols_loop = rows_loop.body()[0]
    # rows -> (tile row, row); cols -> (mvin, tile in it, column); then mvin outside row
    p = divide_loop(p, rows_loop, DIM, ["lt", "lr"], perfect=True)
    lt = p.forward(rows_loop)
    lr = lt.body()[0]
    p = divide_loop(p, p.forward(cols_loop), DIM * w, ["lb", "lc"], perfect=True)
    lb = p.forward(cols_loop)
    if w > 1:
        p = divide_loop(p, lb.body()[0], DIM, ["lw", "lk"], perfect=True)
    p = reorder_loops(p, p.forward(lr))
    p = simplify(p)
    return replace(p, p.forward(lr), block if w > 1 else one)  # 1-trip loops go at the end


def unroll_unit_loops(p: Procedure) -> Procedure:
    """Unroll every ``for x in seq(0, 1)`` (left by 1-tile dimensions)."""
    while True:
        try:
            loops = p.find("for _ in _: _", many=True)
        except SchedulingError:  # find raises when nothing matches
            return simplify(p)
        unit = [
            c
            for c in loops
            if isinstance(c.lo(), LiteralCursor)
            and isinstance(c.hi(), LiteralCursor)
            and c.hi().value() - c.lo().value() == 1
        ]
        if not unit:
            return simplify(p)
        p = unroll_loop(p, unit[0])


def _check_capacity(what: str, sp_rows: int, acc_rows: int) -> None:
    if sp_rows > SP_ROWS or acc_rows > ACC_ROWS:
        raise ValueError(
            f"{what}: {sp_rows} scratchpad rows (max {SP_ROWS}), {acc_rows} accumulator rows (max {ACC_ROWS})"
        )


# --------------------------------------------------------------------------------------------
# matmul: C[N, M] = A[N, K] @ B[K, M]
# --------------------------------------------------------------------------------------------


def tiled_matmul(
    p: Procedure,
    *,
    c_block: tuple[int, int] | None = None,
    outer: str = "j",
    overwrite: bool = True,
    max_block: int = MAX_BLOCK,
    rotate: bool = False,
    store_each_tile: bool = False,
) -> Procedure:
    """C in 16x16 tiles, A and B staged in the scratchpad as 16x16 tiles, C tiles in the
    accumulator.  ``c_block=(BI, BJ)``: when all of C does not fit, C is computed in blocks of
    BI tile rows x BJ tile columns, by a block loop ``ib`` over rows and/or ``jb`` over columns
    (``outer`` says which runs outside when there are both).  The operand of the inner block
    loop streams: its block is staged per C block.  The other operand's block (all of it when its
    axis is not blocked) is staged once around the inner block loop and stays resident.
    ``overwrite``: the first k step writes C (no zero fill).  ``max_block``: tiles per mvin.
    ``rotate``: the C block and the streamed operand's block alternate between two buffers
    across the inner block loop (the experts' rotating accumulator tiles and double-buffered
    operand: the next block's loads and first steps need not wait for this block's stores).
    ``store_each_tile``: each C tile is stored as soon as its reduction ends, so its store
    overlaps the next tile's steps (the block's tiles rotate through the accumulator); otherwise
    the whole block is stored after its last step."""
    (N, K), (K2, M) = _shape(p, "A"), _shape(p, "B")
    assert K == K2 and N % DIM == 0 and M % DIM == 0 and K % DIM == 0, (N, M, K)
    NI, NJ, NK = N // DIM, M // DIM, K // DIM
    BI, BJ = c_block or (NI, NJ)
    assert NI % BI == 0 and NJ % BJ == 0 and outer in ("i", "j")
    by_rows, by_cols = BI < NI, BJ < NJ
    # the inner block loop and the operand it streams (None: C is one block)
    inner = ("jb" if outer == "i" else "ib") if by_rows and by_cols else "ib" if by_rows else "jb" if by_cols else None
    copies = 2 if rotate and inner else 1
    a_rows = BI * NK * DIM * (copies if inner == "ib" else 1)
    b_rows = NK * BJ * DIM * (copies if inner == "jb" else 1)
    _check_capacity(p.name(), a_rows + b_rows, copies * BI * BJ * DIM)

    p = configs_at_top(p, a_stride="stride(A, 0)", b_stride="stride(B, 0)", c_stride="stride(C, 0)", zero=not overwrite)

    # 16x16 output tiles: io, jo, ii, ji (inside the block loops ib, jb)
    p = divide_loop(p, "i", DIM, ["io", "ii"], perfect=True)
    p = divide_loop(p, "j", DIM, ["jo", "ji"], perfect=True)
    p = reorder_loops(p, "ii jo")
    if by_rows:
        p = divide_loop(p, "io", BI, ["ib", "io"], perfect=True)
    if by_cols:
        p = divide_loop(p, "jo", BJ, ["jb", "jo"], perfect=True)
        p = reorder_loops(p, "io jb")
        if by_rows and outer == "j":
            p = reorder_loops(p, "ib jb")

    # the accumulator: res[io, jo, ii, ji], one per C block
    p = expand_dim(p, "res", DIM, "ji")
    p = expand_dim(p, "res", DIM, "ii")
    p = expand_dim(p, "res", BJ, "jo")
    p = expand_dim(p, "res", BI, "io")
    p = lift_alloc(p, "res", n_lifts=4)
    p = set_memory(p, "res", GEMM_ACCUM)

    # zero / multiply-accumulate / store nests, the reduction split into 16-deep steps
    p = fission(p, p.find("res[_] = 0.0").after(), n_lifts=4)
    p = fission(p, p.find_loop("k").after(), n_lifts=2 if store_each_tile else 4)
    p = divide_loop(p, "k", DIM, ["ko", "ki"], perfect=True)
    p = reorder_loops(p, "ji ko")
    p = reorder_loops(p, "ii ko")

    if overwrite:  # the zero fill joins the first k step: res = 0; res += a*b  ==  do_matmul_i8
        p = fuse(p, p.find_loop("io"), p.find_loop("io #1"))
        p = fuse(p, p.find_loop("jo"), p.find_loop("jo #1"))
        if NK > 1:
            p = cut_loop(p, p.find_loop("ko"), 1)
        p = unroll_loop(p, p.find_loop("ko"))
        p = fuse(p, p.find_loop("ii"), p.find_loop("ii #1"))
        p = fuse(p, p.find_loop("ji"), p.find_loop("ji #1"))
        compute = p.find_loop("io")
    else:
        compute = p.find_loop("io #1")

    # scratchpad: the streamed operand per C block, the other around the inner block loop
    a_window = f"A[{DIM * BI}*ib:{DIM * BI}*ib+{DIM * BI}, 0:{K}]" if by_rows else f"A[0:{N}, 0:{K}]"
    b_window = f"B[0:{K}, {DIM * BJ}*jb:{DIM * BJ}*jb+{DIM * BJ}]" if by_cols else f"B[0:{K}, 0:{M}]"
    a_streams = inner in ("ib", None)  # (one block: A, then B, both around the compute)
    streamed, resident = (a_window, b_window) if a_streams else (b_window, a_window)
    names = ("a_s", "b_s") if a_streams else ("b_s", "a_s")
    p = stage_mem(p, compute, streamed, names[0])
    p = stage_mem(p, p.find_loop(inner) if inner else p.forward(compute), resident, names[1])
    p = simplify(p)  # stage_mem's shapes (16*ib+64-16*ib): GEMM memories need literal 16s
    p = tile_buffer(p, "a_s", [BI * DIM, K])
    p = tile_buffer(p, "b_s", [K, BJ * DIM])
    p = simplify(p)
    p = tile_loads(p, "a_s", BI * DIM, K, do_ld_i8_block_id1, do_ld_i8_id1, max_block)
    p = tile_loads(p, "b_s", K, BJ * DIM, do_ld_i8_block_id2, do_ld_i8_id2, max_block)

    # the 16x16x16 steps (find_loop takes the first in program order)
    if overwrite:
        p = replace(p, p.find_loop("ii"), do_matmul_i8)
        if NK > 1:
            p = replace(p, p.find_loop("ii"), do_matmul_acc_i8)
    else:
        p = replace(p, p.find_loop("ii"), do_zero_acc_i32)
        p = replace(p, p.find_loop("ii"), do_matmul_acc_i8)
    p = replace(p, p.find_loop("ii"), do_st_acc_i8)
    if rotate and inner:
        for name in ("res", names[0]):
            p = expand_dim(p, name, 2, f"{inner} % 2")
            p = lift_alloc(p, name)
    return unroll_unit_loops(p)


# --------------------------------------------------------------------------------------------
# conv2d 3x3, stride 1: out[oy, ox, oc] = sum inp[oy+ky, ox+kx, ic] * w[ky, kx, ic, oc]
# --------------------------------------------------------------------------------------------


def conv3x3(p: Procedure, *, overwrite: bool = True, max_block: int = MAX_BLOCK) -> Procedure:
    """One output row (OW = 16 pixels) x 16 output channels per accumulator tile; each 16x16x16
    step multiplies a 16-pixel window of one input row (shifted by kx) by one weight tile.
    All of out stays in the accumulator; all weights and the whole input sit in the scratchpad,
    the input as one 18-row plane per (input row, 16-channel tile) so that every kx shift is a
    plain 16-row window (a wide mvin would put the channel tiles 16 rows apart, breaking the
    planes: the input comes in as a 16-row and a 2-row mvin per plane)."""
    OH, OW, OC = _shape(p, "out")
    KH, KW, IC, OC2 = _shape(p, "w")
    IH, IW, IC2 = _shape(p, "inp")
    assert (KH, KW) == (3, 3) and OW == DIM and OC == OC2 and IC == IC2 and (IH, IW) == (OH + 2, OW + 2)
    assert IC % DIM == 0 and OC % DIM == 0
    NIC, NOC = IC // DIM, OC // DIM
    w_cols = min(max_block, NOC) * DIM  # weight tiles per mvin
    assert OC % w_cols == 0
    _check_capacity(p.name(), KH * KW * NIC * NOC * DIM + IH * NIC * IW, OH * NOC * DIM)

    p = configs_at_top(
        p, a_stride="stride(inp, 1)", b_stride="stride(w, 2)", c_stride="stride(out, 1)", zero=not overwrite
    )
    # accumulator tiles res[oy, oct, ox, occ]
    p = divide_loop(p, "oc", DIM, ["oct", "occ"], perfect=True)
    p = reorder_loops(p, "ox oct")
    p = expand_dim(p, "res", DIM, "occ")
    p = expand_dim(p, "res", OW, "ox")
    p = expand_dim(p, "res", NOC, "oct")
    p = expand_dim(p, "res", OH, "oy")
    p = lift_alloc(p, "res", n_lifts=4)
    p = set_memory(p, "res", GEMM_ACCUM)
    p = fission(p, p.find("res[_] = 0.0").after(), n_lifts=4)
    p = fission(p, p.find_loop("ky").after(), n_lifts=4)
    # reduction steps (ky, kx, ict) outside the 16x16x16 step (ox, occ, icc)
    p = divide_loop(p, "ic", DIM, ["ict", "icc"], perfect=True)
    for outer in ("occ", "ox"):
        for red in ("ky", "kx", "ict"):
            p = reorder_loops(p, f"{outer} {red}")

    if overwrite:  # zero fill joins the (0, 0, 0) step
        p = fuse(p, p.find_loop("oy"), p.find_loop("oy #1"))
        p = fuse(p, p.find_loop("oct"), p.find_loop("oct #1"))
        for red in ("ky", "kx", "ict"):
            p = cut_loop(p, p.find_loop(red), 1)
            p = unroll_loop(p, p.find_loop(red))
        p = fuse(p, p.find_loop("ox"), p.find_loop("ox #1"))
        p = fuse(p, p.find_loop("occ"), p.find_loop("occ #1"))
        compute = p.find_loop("oy")
    else:
        compute = p.find_loop("oy #1")

    p = stage_mem(p, compute, f"w[0:3, 0:3, 0:{IC}, 0:{OC}]", "w_s")
    p = stage_mem(p, p.forward(compute), f"inp[0:{IH}, 0:{IW}, 0:{IC}]", "i_s")
    p = simplify(p)
    p = tile_buffer(p, "w_s", [3, 3, IC, OC])  # w_s[ky, kx, ict, oct, 16, 16]
    p = divide_dim(p, "i_s", 2, DIM)  # i_s[y, ict, x, 16]: 18-row planes
    p = rearrange_dim(p, "i_s", [0, 2, 1, 3])
    p = set_memory(p, "i_s", GEMM_SCRATCH)
    p = simplify(p)

    # weights: per (ky, kx, 16 input channels) one mvin of the oc tiles
    p = tile_loads(p, "w_s", IC, OC, do_ld_i8_block_id2, do_ld_i8_id2, max_block)
    # input: per (y, ict) x 0..16 and x 16..18
    nest = p.find("i_s : _").next()
    p = divide_loop(p, nest.body()[0].body()[0], DIM, ["ct", "cc"], perfect=True)
    p = reorder_loops(p, p.forward(nest).body()[0])
    xs = p.forward(nest).body()[0].body()[0]
    p = cut_loop(p, xs, DIM)
    p = shift_loop(p, p.forward(xs).next(), 0)
    p = simplify(p)
    p = replace(p, p.forward(xs), do_ld_i8_id1)
    p = replace(p, p.forward(nest).body()[0].body()[1], do_ld_i8_id1)

    if overwrite:
        p = replace(p, p.find_loop("ox"), do_matmul_i8)
        for _ in range(3):  # (0, 0, ict>0), (0, kx>0, _), (ky>0, _, _)
            p = replace(p, p.find_loop("ox"), do_matmul_acc_i8)
    else:
        p = replace(p, p.find_loop("ox"), do_zero_acc_i32)
        p = replace(p, p.find_loop("ox"), do_matmul_acc_i8)
    p = replace(p, p.find_loop("ox"), do_st_acc_i8)
    return unroll_unit_loops(p)


# --------------------------------------------------------------------------------------------
# the plain recipe (one 16x16x16 tile per step, configs in every instruction), for comparison
# --------------------------------------------------------------------------------------------


def one_tile_per_step(p: Procedure) -> Procedure:
    p = divide_loop(p, "i", DIM, ["io", "ii"], perfect=True)
    p = divide_loop(p, "j", DIM, ["jo", "ji"], perfect=True)
    p = reorder_loops(p, "ii jo")
    p = expand_dim(p, "res", DIM, "ji")
    p = expand_dim(p, "res", DIM, "ii")
    p = lift_alloc(p, "res", n_lifts=2)
    p = fission(p, p.find("res[_] = 0.0").after(), n_lifts=2)
    p = fission(p, p.find_loop("k").after(), n_lifts=2)
    p = set_memory(p, "res", GEMM_ACCUM)
    p = replace(p, p.find_loop("ii"), zero_acc_i32)
    p = divide_loop(p, "k", DIM, ["ko", "ki"], perfect=True)
    p = reorder_loops(p, "ji ko")
    p = reorder_loops(p, "ii ko")
    p = stage_mem(p, p.find_loop("ii"), "A[16*io:16*io+16, 16*ko:16*ko+16]", "a_s")
    p = stage_mem(p, p.find_loop("ii"), "B[16*ko:16*ko+16, 16*jo:16*jo+16]", "b_s")
    p = simplify(p)
    p = set_memory(p, "a_s", GEMM_SCRATCH)
    p = set_memory(p, "b_s", GEMM_SCRATCH)
    p = replace(p, p.find_loop("i0"), ld_i8)
    p = replace(p, p.find_loop("i0"), ld_i8)
    p = replace(p, p.find_loop("ii"), matmul_acc_i8)
    p = replace(p, p.find_loop("ii"), st_acc_i8)
    return unroll_unit_loops(p)


# --------------------------------------------------------------------------------------------
# the schedules
# --------------------------------------------------------------------------------------------


def schedule_matmul_i8_16(p: Procedure) -> Procedure:
    """One tile each: 2 mvins, 1 matmul (overwrite), 1 mvout."""
    return tiled_matmul(p)


def schedule_matmul_i8_64(p: Procedure) -> Procedure:
    """4x4x4 tiles, all resident: A and B 16 tiles each (4 block mvins each), C 16 tiles."""
    return tiled_matmul(p)


def schedule_matmul_i8_128(p: Procedure) -> Procedure:
    """8x8x8 tiles, all resident: A, B 64 tiles each (2048 scratchpad rows), C 64 tiles = the
    whole accumulator (1024 rows)."""
    return tiled_matmul(p)


def schedule_matmul_i8_256(p: Procedure) -> Procedure:
    """16x16x16 tiles; C has 256 tiles, the accumulator 64: blocks of 4 tile rows x 16 tile
    columns.  B (256 tiles) stays resident; each block stages its 4x16 A tiles."""
    return tiled_matmul(p, c_block=(4, 16))


def schedule_matmul_i8_128x512x256(p: Procedure) -> Procedure:
    """8 x 32 x 16 tiles (N x M x K); C has 256 tiles: blocks of all 8 tile rows x 8 tile
    columns.  A (128 tiles) stays resident; each block stages its 16x8 B tiles."""
    return tiled_matmul(p, c_block=(8, 8))


def schedule_conv2d_i8_16(p: Procedure) -> Procedure:
    """32 output tiles (16 rows x 2 oc tiles) resident in the accumulator; 36 weight tiles and
    the 18x18x32 input resident in the scratchpad; 576 steps."""
    return conv3x3(p)


HAND_SCHEDULES: dict[str, Callable[[Procedure], Procedure]] = {
    "gemmini_matmul_16": schedule_matmul_i8_16,
    "gemmini_matmul_64": schedule_matmul_i8_64,
    "gemmini_matmul_128": schedule_matmul_i8_128,
    "gemmini_matmul_256": schedule_matmul_i8_256,
    "gemmini_matmul_128x512x256": schedule_matmul_i8_128x512x256,
    "gemmini_conv2d_16": schedule_conv2d_i8_16,
}


# expert style for the large kernels: one block of B (all of it where it fits) resident; blocks of
# C one tile row high stream under it, their A rows double-buffered; each C tile is stored as soon
# as its reduction ends, into one of two accumulator buffers that alternate (so its store overlaps
# the next tile's steps). The block widths are the best of those tried on the decoupled model.
EXPERT_BLOCKS: dict[str, tuple[int, int]] = {  # (tile rows, tile columns) of a C block
    "gemmini_matmul_512": (1, 16),
    "gemmini_resnet_12544x256x64": (1, 16),
    "gemmini_resnet_12544x64x256": (1, 4),
    "gemmini_resnet_3136x512x128": (1, 32),
    "gemmini_resnet_3136x128x512": (1, 8),
    "gemmini_resnet_784x1024x256": (1, 16),
}
EXPERT: dict[str, Callable[[Procedure], Procedure]] = {
    name: (lambda p, block=block: tiled_matmul(p, c_block=block, rotate=True, store_each_tile=True))
    for name, block in EXPERT_BLOCKS.items()
}
"""Expert-style hand schedules (resident blocks, rotating accumulator tiles) for the large kernels."""


def _variants() -> dict[str, dict[str, Callable[[Procedure], Procedure]]]:
    out: dict[str, dict[str, Callable[[Procedure], Procedure]]] = {}
    blocks = {"gemmini_matmul_256": (4, 16), "gemmini_matmul_128x512x256": (8, 8)}
    for name in HAND_SCHEDULES:
        if "conv" in name:
            out[name] = {
                "zero_fill": lambda p: conv3x3(p, overwrite=False),
                "one_tile_mvins": lambda p: conv3x3(p, max_block=1),
            }
            continue
        b = blocks.get(name)
        out[name] = {
            "zero_fill": lambda p, b=b: tiled_matmul(p, c_block=b, overwrite=False),
            "one_tile_mvins": lambda p, b=b: tiled_matmul(p, c_block=b, max_block=1),
            "one_tile_per_step": one_tile_per_step,
        }
    out["gemmini_matmul_256"]["c_block_j4"] = lambda p: tiled_matmul(p, c_block=(16, 4))
    out["gemmini_matmul_128x512x256"]["c_block_i2"] = lambda p: tiled_matmul(p, c_block=(2, 32))
    return out


VARIANTS: dict[str, dict[str, Callable[[Procedure], Procedure]]] = _variants()
"""Alternatives to each hand schedule, kept to measure its choices against the model."""


if __name__ == "__main__":  # python benchmarks/kernels/gemmini_hand.py [kernel ...]: cycles of every variant
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gemmini as kernels

    from exo_egraph.targets.gemmini.model import validate_gemmini

    for name in sys.argv[1:] or list(HAND_SCHEDULES):
        kernel = getattr(kernels, name)
        for label, fn in {"hand": HAND_SCHEDULES[name], **VARIANTS[name]}.items():
            start = time.perf_counter()
            v = validate_gemmini(kernel, fn(kernel))
            c = v.counters
            print(
                f"{name:22} {label:18} ok={v.ok} cycles={v.cycles:7d} util={v.utilization:.3f} "
                f"mvins={c.get('mvins', 0)} zero={c.get('mvins_zero', 0)} mvouts={c.get('mvouts', 0)} "
                f"configs={c.get('configs', 0)} spad={c.get('peak_spad_rows', 0)} acc={c.get('peak_acc_rows', 0)} "
                f"({time.perf_counter() - start:.1f}s)",
                flush=True,
            )
