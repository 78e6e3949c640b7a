"""Gemmini instructions exo 1.0's platform lacks, as ``@instr`` procs of the same hardware commands.

exo's ``st_acc_i8`` scales, clamps and applies ReLU when its ``act`` argument is true: its body
holds ``if act == True: tmp2 = relu(tmp2)``, so no kernel whose epilogue never applies ReLU is
that body. Gemmini's ``config_st`` takes the activation as a field (0: none; Gemmini's ISA), so
the same mvout stores without it. A schedule using one imports it from here.

Nor does any exo store take an epilogue without ``acc_scale`` (``tmp = src_tmp`` widened to f32,
then clamped). ``config_st`` takes the scale too: at 1.0 the hardware's scaling rounds an i32 to
the nearest float, which is the C conversion ``tmp = src_tmp`` does, and clamping to i8 makes
the two equal on every i32 (a float rounded past 2^24 is far beyond 127 either way).

Nor does exo multiply by a transposed second operand (``b = B[j, k]``: a linear layer's weights
stored output-major). Gemmini's ``config_ex`` has a B-transpose bit: with it set, the preloaded
tile is read transposed, so a tile loaded as stored (``j`` rows of ``k``) multiplies as ``B^T``.
``matmul_acc_i8_bt`` sets it inline; ``do_matmul_acc_i8_bt`` relies on ``config_matmul_bt``
hoisted to the top (its twin ``matmul_acc_i8_bt_v2`` says so, as exo's ``*_v2`` procs do).
The A-transpose bit does the same for a transposed first operand (``a = A[k, i]``: C = A^T B,
as a backward pass multiplies by activations stored batch-major): ``matmul_acc_i8_at`` and kin.
The model transposes one operand at a time (as stated in its config_ex), so a kernel with both
transposed is declined.
"""

from __future__ import annotations

from exo import DRAM, config, instr, proc
from exo.libs.memories import GEMM_ACCUM, GEMM_SCRATCH
from exo.libs.externs import relu
from exo.platforms.gemmini import acc_scale, clamp, config_ld_i8_s2_id1, do_ld_i8_s2_id1
from exo.stdlib.scheduling import make_instr, rename

# config_st(row stride in bytes, activation: 0 = none, scale), then the store
_ST_ACC_I8_NO_ACT = (
    "gemmini_extended_config_st({dst}.strides[0]*1, 0, {scale}[0]);\n"
    "gemmini_extended_mvout( ((uint64_t) &{dst_data}), (uint32_t) &{src_data}, {m}, {n} );"
)


@instr(_ST_ACC_I8_NO_ACT)
def st_acc_i8_no_act(
    n: size,
    m: size,
    scale: f32,
    src: [i32][n, 16] @ GEMM_ACCUM,
    dst: [i8][n, m] @ DRAM,
):
    assert n <= 16
    assert m <= 16
    assert stride(dst, 1) == 1
    assert stride(src, 0) == 16
    assert stride(src, 1) == 1

    for i in seq(0, n):
        for j in seq(0, m):
            src_tmp: i32
            src_tmp = src[i, j]
            tmp: f32
            acc_scale(src_tmp, tmp, scale)
            tmp2: i8
            clamp(tmp, tmp2)
            dst[i, j] = tmp2


# config_st(row stride in bytes, activation, scale 1.0), then the store
_ST_ACC_I8_UNSCALED = (
    "gemmini_extended_config_st({dst}.strides[0]*1, {act}, 1.0f);\n"
    "gemmini_extended_mvout( ((uint64_t) &{dst_data}), (uint32_t) &{src_data}, {m}, {n} );"
)


@instr(_ST_ACC_I8_UNSCALED)
def st_acc_i8_unscaled(
    n: size,
    m: size,
    act: bool,
    src: [i32][n, 16] @ GEMM_ACCUM,
    dst: [i8][n, m] @ DRAM,
):
    assert n <= 16
    assert m <= 16
    assert stride(dst, 1) == 1
    assert stride(src, 0) == 16
    assert stride(src, 1) == 1

    for i in seq(0, n):
        for j in seq(0, m):
            src_tmp: i32
            src_tmp = src[i, j]
            tmp: f32
            tmp = src_tmp
            tmp2: i8
            clamp(tmp, tmp2)
            if act == True:
                tmp2 = relu(tmp2)
            dst[i, j] = tmp2


_ST_ACC_I8_UNSCALED_NO_ACT = (
    "gemmini_extended_config_st({dst}.strides[0]*1, 0, 1.0f);\n"
    "gemmini_extended_mvout( ((uint64_t) &{dst_data}), (uint32_t) &{src_data}, {m}, {n} );"
)


@instr(_ST_ACC_I8_UNSCALED_NO_ACT)
def st_acc_i8_unscaled_no_act(
    n: size,
    m: size,
    src: [i32][n, 16] @ GEMM_ACCUM,
    dst: [i8][n, m] @ DRAM,
):
    assert n <= 16
    assert m <= 16
    assert stride(dst, 1) == 1
    assert stride(src, 0) == 16
    assert stride(src, 1) == 1

    for i in seq(0, n):
        for j in seq(0, m):
            src_tmp: i32
            src_tmp = src[i, j]
            tmp: f32
            tmp = src_tmp
            tmp2: i8
            clamp(tmp, tmp2)
            dst[i, j] = tmp2


@config
class ConfigMatmulBT:
    done: bool


@config
class ConfigMatmulAT:
    done: bool


# config_ex(dataflow WS, no activation, no shift, A_stride 1, A_transpose, B_transpose)
_CONFIG_MATMUL_BT = "gemmini_extended_config_ex(WS, 0, 0, 1, 0, 1);\n"
_CONFIG_MATMUL_AT = "gemmini_extended_config_ex(WS, 0, 0, 1, 1, 0);\n"


@instr(_CONFIG_MATMUL_BT)
def config_matmul_bt():
    ConfigMatmulBT.done = True


@instr(_CONFIG_MATMUL_AT)
def config_matmul_at():
    ConfigMatmulAT.done = True


# preload(B, C, B as multiplied: M columns by K rows, C: M by N), then compute(A as multiplied:
# K columns by N rows); the accumulate bit (0x40000000) on C adds to the accumulator instead of
# overwriting it. A transposed tile's address and sizes are the same: config_ex says how it is stored.
def _matmul_c(accumulate: bool) -> str:
    c = "(uint32_t)(&{C_data})" + (" | 0x40000000" if accumulate else "")
    return (
        f"gemmini_extended_preload((uint32_t)(&{{B_data}}), {c}, {{M}}, {{K}}, {{M}}, {{N}});\n"
        "gemmini_extended_compute_preloaded((uint32_t)(&{A_data}), ~((uint32_t)0), {K}, {N}, 16, 16);"
    )


@proc
def _matmul_acc_bt(
    N: size,
    M: size,
    K: size,
    A: [i8][N, 16] @ GEMM_SCRATCH,
    B: [i8][M, 16] @ GEMM_SCRATCH,
    C: [i32][N, 16] @ GEMM_ACCUM,
):
    assert N <= 16
    assert M <= 16
    assert K <= 16

    for i in seq(0, N):
        for j in seq(0, M):
            for k in seq(0, K):
                a: i32
                b: i32
                a = A[i, k]
                b = B[j, k]
                C[i, j] += a * b


@proc
def _matmul_bt_overwrite(
    N: size,
    M: size,
    K: size,
    A: [i8][N, 16] @ GEMM_SCRATCH,
    B: [i8][M, 16] @ GEMM_SCRATCH,
    C: [i32][N, 16] @ GEMM_ACCUM,
):
    assert N <= 16
    assert M <= 16
    assert K <= 16

    for i in seq(0, N):
        for j in seq(0, M):
            C[i, j] = 0.0
            for k in seq(0, K):
                a: i32
                b: i32
                a = A[i, k]
                b = B[j, k]
                C[i, j] += a * b


@proc
def _matmul_acc_at(
    N: size,
    M: size,
    K: size,
    A: [i8][K, 16] @ GEMM_SCRATCH,
    B: [i8][K, 16] @ GEMM_SCRATCH,
    C: [i32][N, 16] @ GEMM_ACCUM,
):
    assert N <= 16
    assert M <= 16
    assert K <= 16

    for i in seq(0, N):
        for j in seq(0, M):
            for k in seq(0, K):
                a: i32
                b: i32
                a = A[k, i]
                b = B[k, j]
                C[i, j] += a * b


@proc
def _matmul_at_overwrite(
    N: size,
    M: size,
    K: size,
    A: [i8][K, 16] @ GEMM_SCRATCH,
    B: [i8][K, 16] @ GEMM_SCRATCH,
    C: [i32][N, 16] @ GEMM_ACCUM,
):
    assert N <= 16
    assert M <= 16
    assert K <= 16

    for i in seq(0, N):
        for j in seq(0, M):
            C[i, j] = 0.0
            for k in seq(0, K):
                a: i32
                b: i32
                a = A[k, i]
                b = B[k, j]
                C[i, j] += a * b


# each body twice: with the config inline, and the do_ form relying on its config hoisted
matmul_acc_i8_bt = make_instr(rename(_matmul_acc_bt, "matmul_acc_i8_bt"), _CONFIG_MATMUL_BT + _matmul_c(True))
do_matmul_acc_i8_bt = make_instr(rename(_matmul_acc_bt, "do_matmul_acc_i8_bt"), _matmul_c(True))
matmul_i8_bt = make_instr(rename(_matmul_bt_overwrite, "matmul_i8_bt"), _CONFIG_MATMUL_BT + _matmul_c(False))
do_matmul_i8_bt = make_instr(rename(_matmul_bt_overwrite, "do_matmul_i8_bt"), _matmul_c(False))
matmul_acc_i8_at = make_instr(rename(_matmul_acc_at, "matmul_acc_i8_at"), _CONFIG_MATMUL_AT + _matmul_c(True))
do_matmul_acc_i8_at = make_instr(rename(_matmul_acc_at, "do_matmul_acc_i8_at"), _matmul_c(True))
matmul_i8_at = make_instr(rename(_matmul_at_overwrite, "matmul_i8_at"), _CONFIG_MATMUL_AT + _matmul_c(False))
do_matmul_i8_at = make_instr(rename(_matmul_at_overwrite, "do_matmul_i8_at"), _matmul_c(False))


@proc
def matmul_acc_i8_bt_v2(
    N: size,
    M: size,
    K: size,
    A: [i8][N, 16] @ GEMM_SCRATCH,
    B: [i8][M, 16] @ GEMM_SCRATCH,
    C: [i32][N, 16] @ GEMM_ACCUM,
):
    assert N <= 16
    assert M <= 16
    assert K <= 16

    config_matmul_bt()
    do_matmul_acc_i8_bt(N, M, K, A, B, C)


@proc
def matmul_i8_bt_v2(
    N: size,
    M: size,
    K: size,
    A: [i8][N, 16] @ GEMM_SCRATCH,
    B: [i8][M, 16] @ GEMM_SCRATCH,
    C: [i32][N, 16] @ GEMM_ACCUM,
):
    assert N <= 16
    assert M <= 16
    assert K <= 16

    config_matmul_bt()
    do_matmul_i8_bt(N, M, K, A, B, C)


@proc
def matmul_acc_i8_at_v2(
    N: size,
    M: size,
    K: size,
    A: [i8][K, 16] @ GEMM_SCRATCH,
    B: [i8][K, 16] @ GEMM_SCRATCH,
    C: [i32][N, 16] @ GEMM_ACCUM,
):
    assert N <= 16
    assert M <= 16
    assert K <= 16

    config_matmul_at()
    do_matmul_acc_i8_at(N, M, K, A, B, C)


@proc
def matmul_i8_at_v2(
    N: size,
    M: size,
    K: size,
    A: [i8][K, 16] @ GEMM_SCRATCH,
    B: [i8][K, 16] @ GEMM_SCRATCH,
    C: [i32][N, 16] @ GEMM_ACCUM,
):
    assert N <= 16
    assert M <= 16
    assert K <= 16

    config_matmul_at()
    do_matmul_i8_at(N, M, K, A, B, C)


@proc
def ld_i8_s2_id1_v2(
    n: size,
    m: size,
    src: [i8][n * 2 - 1, m] @ DRAM,
    dst: [i8][n, 16] @ GEMM_SCRATCH,
):
    assert n <= 16
    assert m <= 16
    assert stride(src, 1) == 1
    assert stride(dst, 0) == 16
    assert stride(dst, 1) == 1

    config_ld_i8_s2_id1(stride(src, 0))
    do_ld_i8_s2_id1(n, m, src, dst)


__all__ = [
    "st_acc_i8_no_act", "st_acc_i8_unscaled", "st_acc_i8_unscaled_no_act", "ConfigMatmulBT", "config_matmul_bt",
    "matmul_acc_i8_bt", "do_matmul_acc_i8_bt", "matmul_acc_i8_bt_v2", "matmul_i8_bt", "do_matmul_i8_bt",
    "matmul_i8_bt_v2", "ConfigMatmulAT", "config_matmul_at", "matmul_acc_i8_at", "do_matmul_acc_i8_at",
    "matmul_acc_i8_at_v2", "matmul_i8_at", "do_matmul_i8_at", "matmul_i8_at_v2",
]  # fmt: skip
