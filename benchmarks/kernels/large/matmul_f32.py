"""f32 matmuls of the sizes users write, 512³ and 1024³, for the scaling benchmark (benchmarks/scaling.py).

Kept out of benchmarks/kernels/*.py, which the test suite explores one by one.
"""

from __future__ import annotations

from exo import DRAM, proc


@proc
def matmul_f32_512(A: f32[512, 512] @ DRAM, B: f32[512, 512] @ DRAM, C: f32[512, 512] @ DRAM):
    for i in seq(0, 512):
        for j in seq(0, 512):
            for k in seq(0, 512):
                C[i, j] += A[i, k] * B[k, j]


@proc
def matmul_f32_1024(A: f32[1024, 1024] @ DRAM, B: f32[1024, 1024] @ DRAM, C: f32[1024, 1024] @ DRAM):
    for i in seq(0, 1024):
        for j in seq(0, 1024):
            for k in seq(0, 1024):
                C[i, j] += A[i, k] * B[k, j]
