"""Gemmini instructions exo 1.0's platform lacks, as ``@instr`` procs of the same hardware commands.

exo's ``st_acc_i8`` scales, clamps and applies ReLU when its ``act`` argument is true: its body
holds ``if act == True: tmp2 = relu(tmp2)``, so no kernel whose epilogue never applies ReLU is
that body. Gemmini's ``config_st`` takes the activation as a field (0: none; Gemmini's ISA), so
the same mvout stores without it. A schedule using one imports it from here.

Nor does any exo store take an epilogue without ``acc_scale`` (``tmp = src_tmp`` widened to f32,
then clamped). ``config_st`` takes the scale too: at 1.0 the hardware's scaling rounds an i32 to
the nearest float, which is the C conversion ``tmp = src_tmp`` does, and clamping to i8 makes
the two equal on every i32 (a float rounded past 2^24 is far beyond 127 either way).
"""

from __future__ import annotations

from exo import DRAM, instr
from exo.libs.memories import GEMM_ACCUM
from exo.libs.externs import relu
from exo.platforms.gemmini import acc_scale, clamp

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


__all__ = ["st_acc_i8_no_act", "st_acc_i8_unscaled", "st_acc_i8_unscaled_no_act"]
