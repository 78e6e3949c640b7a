"""A 2-D convolution as users write it (channels first, a 3x3 window, stride 1), for the x86 target
and its peers (benchmarks/peers.py); kept out of benchmarks/kernels/*.py, which the tests explore."""

from __future__ import annotations

from exo import DRAM, proc


@proc
def conv2d_f32(inp: f32[16, 34, 34] @ DRAM, w: f32[32, 16, 3, 3] @ DRAM, out: f32[32, 32, 32] @ DRAM):
    for k in seq(0, 32):
        for oy in seq(0, 32):
            for ox in seq(0, 32):
                for c in seq(0, 16):
                    for ry in seq(0, 3):
                        for rx in seq(0, 3):
                            out[k, oy, ox] += w[k, c, ry, rx] * inp[c, oy + ry, ox + rx]
