"""Larger and non-square f32 matmuls for the x86 target and its peers (benchmarks/peers.py).

Kept out of benchmarks/kernels/*.py, which the test suite explores one by one on the cpu target.
"""

from __future__ import annotations

from exo import DRAM, proc


@proc
def matmul_f32_256(A: f32[256, 256] @ DRAM, B: f32[256, 256] @ DRAM, C: f32[256, 256] @ DRAM):
    for i in seq(0, 256):
        for j in seq(0, 256):
            for k in seq(0, 256):
                C[i, j] += A[i, k] * B[k, j]


@proc
def matmul_f32_128x1024x64(A: f32[128, 64] @ DRAM, B: f32[64, 1024] @ DRAM, C: f32[128, 1024] @ DRAM):
    # M x N x K = 128 x 1024 x 64: a wide output, a short reduction
    for i in seq(0, 128):
        for j in seq(0, 1024):
            for k in seq(0, 64):
                C[i, j] += A[i, k] * B[k, j]
