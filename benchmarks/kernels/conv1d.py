"""1-D convolution (valid part), out[i] += inp[i + r] · w[r]."""

from __future__ import annotations

from exo import DRAM, proc


@proc
def conv1d_f32(inp: f32[128] @ DRAM, w: f32[5] @ DRAM, out: f32[124] @ DRAM):
    for i in seq(0, 124):
        for r in seq(0, 5):
            out[i] += inp[i + r] * w[r]


@proc
def conv1d_i8(inp: i8[128] @ DRAM, w: i8[5] @ DRAM, out: i8[124] @ DRAM):
    for i in seq(0, 124):
        for r in seq(0, 5):
            out[i] += inp[i + r] * w[r]
