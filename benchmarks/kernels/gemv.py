"""Matrix-vector product, y += A·x."""

from __future__ import annotations

from exo import DRAM, proc


@proc
def gemv_f32_128(A: f32[128, 128] @ DRAM, x: f32[128] @ DRAM, y: f32[128] @ DRAM):
    for i in seq(0, 128):
        for j in seq(0, 128):
            y[i] += A[i, j] * x[j]
