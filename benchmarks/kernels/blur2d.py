"""Producer/consumer pairs with an intermediate buffer, where fission and fusion matter.

``blur2d_f32``: a 3×3 box blur as a horizontal pass into ``tmp`` then a vertical pass. The
vertical pass reads ``tmp[i + 1]`` and ``tmp[i + 2]``, so its ``i`` loop cannot be fused with the
producer's (the guard must refuse); the ``j`` loops can be reordered and tiled.
``scale_add_f32``: a pointwise pair, where fusing both loops is legal.
"""

from __future__ import annotations

from exo import DRAM, proc


@proc
def blur2d_f32(inp: f32[64, 64] @ DRAM, out: f32[62, 62] @ DRAM):
    tmp: f32[64, 62] @ DRAM
    for i in seq(0, 64):
        for j in seq(0, 62):
            tmp[i, j] = inp[i, j] + inp[i, j + 1] + inp[i, j + 2]
    for i in seq(0, 62):
        for j in seq(0, 62):
            out[i, j] = tmp[i, j] + tmp[i + 1, j] + tmp[i + 2, j]


@proc
def scale_add_f32(a: f32[64, 64] @ DRAM, b: f32[64, 64] @ DRAM, out: f32[64, 64] @ DRAM):
    tmp: f32[64, 64] @ DRAM
    for i in seq(0, 64):
        for j in seq(0, 64):
            tmp[i, j] = a[i, j] * b[i, j]
    for i in seq(0, 64):
        for j in seq(0, 64):
            out[i, j] = tmp[i, j] + a[i, j]
