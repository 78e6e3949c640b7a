"""Small Exo kernels the tests share (modules that define @procs need this future import)."""

from __future__ import annotations

from exo import DRAM, proc


@proc
def matmul16(A: f32[16, 16] @ DRAM, B: f32[16, 16] @ DRAM, C: f32[16, 16] @ DRAM):
    for i in seq(0, 16):
        for j in seq(0, 16):
            for k in seq(0, 16):
                C[i, j] += A[i, k] * B[k, j]


@proc
def matmul16_i8(A: i8[16, 16] @ DRAM, B: i8[16, 16] @ DRAM, C: i8[16, 16] @ DRAM):
    for i in seq(0, 16):
        for j in seq(0, 16):
            for k in seq(0, 16):
                C[i, j] += A[i, k] * B[k, j]


@proc
def pointwise_pair(a: f32[8, 8] @ DRAM, o: f32[8, 8] @ DRAM):
    tmp: f32[8, 8] @ DRAM
    for i in seq(0, 8):
        for j in seq(0, 8):
            tmp[i, j] = a[i, j] * 2.0
    for i in seq(0, 8):
        for j in seq(0, 8):
            o[i, j] = tmp[i, j] + a[i, j]


@proc
def shifted_pair(a: f32[9, 8] @ DRAM, o: f32[8, 8] @ DRAM):
    tmp: f32[9, 8] @ DRAM
    for i in seq(0, 8):
        for j in seq(0, 8):
            tmp[i + 1, j] = a[i + 1, j] * 2.0
    for i in seq(0, 8):
        for j in seq(0, 8):
            o[i, j] = tmp[i + 1, j] + tmp[i, j]


@proc
def prefix_sum(x: f32[16] @ DRAM):
    for i in seq(0, 15):
        x[i + 1] += x[i]


@proc
def inner_alloc(a: i32[8, 8] @ DRAM, o: i32[8, 8] @ DRAM):
    for i in seq(0, 8):
        t: i32[8] @ DRAM
        for j in seq(0, 8):
            t[j] = a[i, j]
        for j in seq(0, 8):
            o[i, j] += t[j]


@proc
def scale_rows_n(n: size, a: f32[8, n] @ DRAM):
    for i in seq(0, 8):
        for j in seq(0, n):
            a[i, j] = 2.0 * a[i, j]


@proc
def nonaffine(a: f32[16] @ DRAM):
    for i in seq(0, 16):
        a[i / 2] = 0.0


@proc
def fused_pair_i32(a: i32[8, 8] @ DRAM, o: i32[8, 8] @ DRAM):
    tmp: i32[8, 8] @ DRAM
    for i in seq(0, 8):
        for j in seq(0, 8):
            tmp[i, j] = a[i, j] * 2
            o[i, j] = tmp[i, j] + a[i, j]


@proc
def split_pair_i32(a: i32[8, 8] @ DRAM, o: i32[8, 8] @ DRAM):
    tmp: i32[8, 8] @ DRAM
    for i in seq(0, 8):
        for j in seq(0, 8):
            tmp[i, j] = a[i, j] * 2
    for i in seq(0, 8):
        for j in seq(0, 8):
            o[i, j] = tmp[i, j] + a[i, j]


@proc
def stencil_pair_i32(a: i32[9, 8] @ DRAM, o: i32[8, 8] @ DRAM):
    tmp: i32[9, 8] @ DRAM
    for i in seq(0, 9):
        for j in seq(0, 8):
            tmp[i, j] = a[i, j] * 2
    for i in seq(0, 8):
        for j in seq(0, 8):
            o[i, j] = tmp[i + 1, j] + tmp[i, j]


@proc
def fuse_after_fission_i32(a: i32[8] @ DRAM, o: i32[8] @ DRAM):
    # The producer loop may fuse with the first statement of the consumer, but not with the
    # second (it reads tmp[i + 1]): a schedule must fission the consumer before fusing.
    tmp: i32[9] @ DRAM
    for z in seq(0, 9):
        tmp[z] = 0
    for i in seq(0, 8):
        tmp[i] = a[i] * 2
    for i in seq(0, 8):
        o[i] = a[i] * 3
        o[i] += tmp[i + 1]


@proc
def vadd18_i32(a: i32[18] @ DRAM, o: i32[18] @ DRAM):
    for i in seq(0, 18):
        o[i] = a[i] + 1


@proc
def clamp_rows(a: f32[8, 8] @ DRAM, n: size):
    assert n <= 8
    for i in seq(0, 8):
        for j in seq(0, 8):
            if j < n:
                a[i, j] = -a[i, j]
            else:
                a[i, j] = 0.0


@proc
def scale_row(x: f32[8] @ DRAM):
    for i in seq(0, 8):
        x[i] = x[i] * 2.0


@proc
def calls_and_windows(a: f32[4, 8] @ DRAM):
    for r in seq(0, 4):
        row = a[r, 0:8]
        scale_row(row)
    for r in seq(0, 4):
        pass


@proc
def const_arith(a: f32[4] @ DRAM, b: i8[4] @ DRAM):
    for i in seq(0, 4):
        a[i] = (1.0 + 2.0) * a[i] + 0.1 * 3.0
        b[i] = (1 + 1) * b[i] + 2 * 3
