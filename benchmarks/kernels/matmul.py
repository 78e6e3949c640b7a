"""Matrix multiply, C += A·B, at three sizes in f32 and i8 (all DRAM)."""

from __future__ import annotations

from exo import DRAM, proc


@proc
def matmul_f32_16(A: f32[16, 16] @ DRAM, B: f32[16, 16] @ DRAM, C: f32[16, 16] @ DRAM):
    for i in seq(0, 16):
        for j in seq(0, 16):
            for k in seq(0, 16):
                C[i, j] += A[i, k] * B[k, j]


@proc
def matmul_f32_64(A: f32[64, 64] @ DRAM, B: f32[64, 64] @ DRAM, C: f32[64, 64] @ DRAM):
    for i in seq(0, 64):
        for j in seq(0, 64):
            for k in seq(0, 64):
                C[i, j] += A[i, k] * B[k, j]


@proc
def matmul_f32_128(A: f32[128, 128] @ DRAM, B: f32[128, 128] @ DRAM, C: f32[128, 128] @ DRAM):
    for i in seq(0, 128):
        for j in seq(0, 128):
            for k in seq(0, 128):
                C[i, j] += A[i, k] * B[k, j]


@proc
def matmul_i8_16(A: i8[16, 16] @ DRAM, B: i8[16, 16] @ DRAM, C: i8[16, 16] @ DRAM):
    for i in seq(0, 16):
        for j in seq(0, 16):
            for k in seq(0, 16):
                C[i, j] += A[i, k] * B[k, j]


@proc
def matmul_i8_64(A: i8[64, 64] @ DRAM, B: i8[64, 64] @ DRAM, C: i8[64, 64] @ DRAM):
    for i in seq(0, 64):
        for j in seq(0, 64):
            for k in seq(0, 64):
                C[i, j] += A[i, k] * B[k, j]


@proc
def matmul_i8_128(A: i8[128, 128] @ DRAM, B: i8[128, 128] @ DRAM, C: i8[128, 128] @ DRAM):
    for i in seq(0, 128):
        for j in seq(0, 128):
            for k in seq(0, 128):
                C[i, j] += A[i, k] * B[k, j]
