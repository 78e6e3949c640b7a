"""Kernels for the Gemmini target: i8 matmul at several sizes and a small 2-D convolution.

Each is the plain CPU program a user starts from, written with the scalar steps of exo's
Gemmini instructions (i32 products summed in an i32 accumulator; Gemmini's `acc_scale`, then
`clamp` to i8 and an optional ReLU on the way out), so every step of the way to Gemmini is an
Exo rewrite that Exo can check.
"""

from __future__ import annotations

from exo import DRAM, proc
from exo.platforms.gemmini import acc_scale, clamp
from exo.libs.externs import relu


@proc
def gemm_i8(
    N: size, M: size, K: size, scale: f32, act: bool, A: i8[N, K] @ DRAM, B: i8[K, M] @ DRAM, C: i8[N, M] @ DRAM
):
    for i in seq(0, N):
        for j in seq(0, M):
            res: i32
            res = 0.0
            for k in seq(0, K):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            src_tmp: i32
            src_tmp = res
            tmp: f32
            acc_scale(src_tmp, tmp, scale)
            tmp2: i8
            clamp(tmp, tmp2)
            if act == True:
                tmp2 = relu(tmp2)
            C[i, j] = tmp2


@proc
def conv3x3_i8(
    OH: size,
    OW: size,
    OC: size,
    IC: size,
    scale: f32,
    act: bool,
    inp: i8[OH + 2, OW + 2, IC] @ DRAM,
    w: i8[3, 3, IC, OC] @ DRAM,
    out: i8[OH, OW, OC] @ DRAM,
):
    for oy in seq(0, OH):
        for ox in seq(0, OW):
            for oc in seq(0, OC):
                res: i32
                res = 0.0
                for ky in seq(0, 3):
                    for kx in seq(0, 3):
                        for ic in seq(0, IC):
                            a: i32
                            b: i32
                            a = inp[oy + ky, ox + kx, ic]
                            b = w[ky, kx, ic, oc]
                            res += a * b
                src_tmp: i32
                src_tmp = res
                tmp: f32
                acc_scale(src_tmp, tmp, scale)
                tmp2: i8
                clamp(tmp, tmp2)
                if act == True:
                    tmp2 = relu(tmp2)
                out[oy, ox, oc] = tmp2


def _sized(p, name: str, **sizes: int):
    from exo.stdlib.scheduling import rename

    return rename(p.partial_eval(**sizes), name)


gemmini_matmul_16 = _sized(gemm_i8, "gemmini_matmul_16", N=16, M=16, K=16)
gemmini_matmul_64 = _sized(gemm_i8, "gemmini_matmul_64", N=64, M=64, K=64)
gemmini_matmul_128 = _sized(gemm_i8, "gemmini_matmul_128", N=128, M=128, K=128)
gemmini_matmul_256 = _sized(gemm_i8, "gemmini_matmul_256", N=256, M=256, K=256)
gemmini_matmul_128x512x256 = _sized(gemm_i8, "gemmini_matmul_128x512x256", N=128, M=512, K=256)  # N×M×K
gemmini_conv2d_16 = _sized(conv3x3_i8, "gemmini_conv2d_16", OH=16, OW=16, OC=32, IC=32)

GEMMINI_KERNELS = (
    "gemmini_matmul_16",
    "gemmini_matmul_64",
    "gemmini_matmul_128",
    "gemmini_matmul_256",
    "gemmini_matmul_128x512x256",
    "gemmini_conv2d_16",
)

# large: 512^3 and the matmul layers of ResNet-50 (N x M x K; the shapes of Exo's own Gemmini
# benchmarks, apps/gemmini), for the benchmark table only (each replay and model run takes seconds)
gemmini_matmul_512 = _sized(gemm_i8, "gemmini_matmul_512", N=512, M=512, K=512)
gemmini_resnet_12544x256x64 = _sized(gemm_i8, "gemmini_resnet_12544x256x64", N=12544, M=256, K=64)
gemmini_resnet_12544x64x256 = _sized(gemm_i8, "gemmini_resnet_12544x64x256", N=12544, M=64, K=256)
gemmini_resnet_3136x512x128 = _sized(gemm_i8, "gemmini_resnet_3136x512x128", N=3136, M=512, K=128)
gemmini_resnet_3136x128x512 = _sized(gemm_i8, "gemmini_resnet_3136x128x512", N=3136, M=128, K=512)
gemmini_resnet_784x1024x256 = _sized(gemm_i8, "gemmini_resnet_784x1024x256", N=784, M=1024, K=256)

GEMMINI_LARGE = (
    "gemmini_matmul_512",
    "gemmini_resnet_12544x256x64",
    "gemmini_resnet_12544x64x256",
    "gemmini_resnet_3136x512x128",
    "gemmini_resnet_3136x128x512",
    "gemmini_resnet_784x1024x256",
)


# ----------------------------------------------------------------------------- numpy references


def _epilogue(acc: "np.ndarray", scale: float, act: bool) -> "np.ndarray":
    """acc_scale (Gemmini rounds to nearest even), clamp to i8, optional ReLU."""
    import numpy as np

    y = np.rint(acc.astype(np.float32) * np.float32(scale))
    y = np.clip(y, -128, 127)
    if act:
        y = np.maximum(y, 0)
    return y.astype(np.int8)


def matmul_reference(v: dict) -> dict:
    import numpy as np

    acc = (v["A"].astype(np.int64) @ v["B"].astype(np.int64)).astype(np.int32)
    return {"C": _epilogue(acc, v["scale"][0], bool(v["act"]))}


def conv2d_reference(v: dict) -> dict:
    import numpy as np

    inp, w = v["inp"].astype(np.int64), v["w"].astype(np.int64)
    oh, ow = inp.shape[0] - 2, inp.shape[1] - 2
    acc = sum(np.einsum("yxc,co->yxo", inp[ky : ky + oh, kx : kx + ow], w[ky, kx]) for ky in range(3) for kx in range(3))
    return {"out": _epilogue(acc.astype(np.int32), v["scale"][0], bool(v["act"]))}


REFERENCES = {name: (conv2d_reference if "conv" in name else matmul_reference) for name in GEMMINI_KERNELS + GEMMINI_LARGE}
