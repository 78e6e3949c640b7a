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


# C = A Bᵀ: B stored output-major (a linear layer's weights, ``B[j, k]``)
@proc
def gemm_i8_bt(
    N: size, M: size, K: size, scale: f32, act: bool, A: i8[N, K] @ DRAM, B: i8[M, K] @ DRAM, C: i8[N, M] @ DRAM
):
    for i in seq(0, N):
        for j in seq(0, M):
            res: i32
            res = 0.0
            for k in seq(0, K):
                a: i32
                b: i32
                a = A[i, k]
                b = B[j, k]
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


# C = Aᵀ B: A stored reduction-major (a backward pass's activations, ``A[k, i]``)
@proc
def gemm_i8_at(
    N: size, M: size, K: size, scale: f32, act: bool, A: i8[K, N] @ DRAM, B: i8[K, M] @ DRAM, C: i8[N, M] @ DRAM
):
    for i in seq(0, N):
        for j in seq(0, M):
            res: i32
            res = 0.0
            for k in seq(0, K):
                a: i32
                b: i32
                a = A[k, i]
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


# A 3x3 stride-1 convolution as Exo's own Gemmini code writes it (apps/gemmini): a batch, a bias
# row per output channel starting the accumulator, operands copied through i8 temporaries
# before they are widened.
@proc
def conv_bias_i8(
    batch: size,
    out_dim: size,
    out_ch: size,
    in_ch: size,
    scale: f32,
    act: bool,
    inp: i8[batch, out_dim + 2, out_dim + 2, in_ch] @ DRAM,
    weights: i8[3, 3, in_ch, out_ch] @ DRAM,
    bias: i32[1, out_ch] @ DRAM,
    output: i8[batch, out_dim, out_dim, out_ch] @ DRAM,
):
    for b in seq(0, batch):
        for orow in seq(0, out_dim):
            for ocol in seq(0, out_dim):
                for och in seq(0, out_ch):
                    res: i32
                    res = bias[0, och]
                    for krow in seq(0, 3):
                        for kcol in seq(0, 3):
                            for kch in seq(0, in_ch):
                                w_s: i8
                                w_s = weights[krow, kcol, kch, och]
                                i_s: i8
                                i_s = inp[b, orow + krow, ocol + kcol, kch]
                                a2: i32
                                b2: i32
                                a2 = i_s
                                b2 = w_s
                                res += a2 * b2
                    src_tmp: i32
                    src_tmp = res
                    tmp_res1: f32
                    acc_scale(src_tmp, tmp_res1, scale)
                    tmp_res2: i8
                    clamp(tmp_res1, tmp_res2)
                    if act == True:
                        tmp_res2 = relu(tmp_res2)
                    output[b, orow, ocol, och] = tmp_res2


# The stride-2 3x3 convolution of ResNet-50 (v1.5: the first block of stages 3-5 halves the
# width in its 3x3 conv) in the same form: output pixel (orow, ocol) reads input rows and columns
# 2 * orow + krow, 2 * ocol + kcol of the padded input.
@proc
def conv_bias_s2_i8(
    batch: size,
    out_dim: size,
    out_ch: size,
    in_ch: size,
    scale: f32,
    act: bool,
    inp: i8[batch, 2 * out_dim + 1, 2 * out_dim + 1, in_ch] @ DRAM,
    weights: i8[3, 3, in_ch, out_ch] @ DRAM,
    bias: i32[1, out_ch] @ DRAM,
    output: i8[batch, out_dim, out_dim, out_ch] @ DRAM,
):
    for b in seq(0, batch):
        for orow in seq(0, out_dim):
            for ocol in seq(0, out_dim):
                for och in seq(0, out_ch):
                    res: i32
                    res = bias[0, och]
                    for krow in seq(0, 3):
                        for kcol in seq(0, 3):
                            for kch in seq(0, in_ch):
                                w_s: i8
                                w_s = weights[krow, kcol, kch, och]
                                i_s: i8
                                i_s = inp[b, 2 * orow + krow, 2 * ocol + kcol, kch]
                                a2: i32
                                b2: i32
                                a2 = i_s
                                b2 = w_s
                                res += a2 * b2
                    src_tmp: i32
                    src_tmp = res
                    tmp_res1: f32
                    acc_scale(src_tmp, tmp_res1, scale)
                    tmp_res2: i8
                    clamp(tmp_res1, tmp_res2)
                    if act == True:
                        tmp_res2 = relu(tmp_res2)
                    output[b, orow, ocol, och] = tmp_res2


# Epilogue forms users write besides Exo's own (`acc_scale(src_tmp, ...)` after an i32 copy): the
# accumulator read straight into acc_scale, no acc_scale (widened to f32, then clamped), an i32
# output, with and without ReLU.
@proc
def matmul_no_relu(scale: f32, A: i8[32, 32], B: i8[32, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 32):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            tmp: f32
            acc_scale(res, tmp, scale)
            tmp2: i8
            clamp(tmp, tmp2)
            C[i, j] = tmp2


@proc
def matmul_i32_out(A: i8[32, 48], B: i8[48, 32], C: i32[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 48):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            C[i, j] = res


@proc
def matmul_unscaled_bare(A: i8[32, 48], B: i8[48, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 48):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            tmp: f32
            tmp = res
            tmp2: i8
            clamp(tmp, tmp2)
            C[i, j] = tmp2


@proc
def matmul_unscaled(act: bool, A: i8[32, 48], B: i8[48, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 48):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            src_tmp: i32
            src_tmp = res
            tmp: f32
            tmp = src_tmp
            tmp2: i8
            clamp(tmp, tmp2)
            if act == True:
                tmp2 = relu(tmp2)
            C[i, j] = tmp2


@proc
def matmul_unscaled_no_act(A: i8[32, 48], B: i8[48, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 48):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            src_tmp: i32
            src_tmp = res
            tmp: f32
            tmp = src_tmp
            tmp2: i8
            clamp(tmp, tmp2)
            C[i, j] = tmp2


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

# the 3x3 convolutions of ResNet-50 that Exo's apps/gemmini schedules (batch 4; output 56, 28 and
# 14 wide: 56 and 28 are cut into whole tiles and a partial one, 14 is one partial tile)
gemmini_resnet_conv_56x64 = _sized(conv_bias_i8, "gemmini_resnet_conv_56x64", batch=4, out_dim=56, out_ch=64, in_ch=64)
gemmini_resnet_conv_28x128 = _sized(conv_bias_i8, "gemmini_resnet_conv_28x128", batch=4, out_dim=28, out_ch=128,
                                    in_ch=128)  # fmt: skip
gemmini_resnet_conv_14x256 = _sized(conv_bias_i8, "gemmini_resnet_conv_14x256", batch=4, out_dim=14, out_ch=256,
                                    in_ch=256)  # fmt: skip

# the stride-2 3x3 convolutions of ResNet-50 (batch 4): 56 -> 28, 28 -> 14 and 14 -> 7 wide
gemmini_resnet_conv_s2_28x128 = _sized(conv_bias_s2_i8, "gemmini_resnet_conv_s2_28x128", batch=4, out_dim=28,
                                       out_ch=128, in_ch=128)  # fmt: skip
gemmini_resnet_conv_s2_14x256 = _sized(conv_bias_s2_i8, "gemmini_resnet_conv_s2_14x256", batch=4, out_dim=14,
                                       out_ch=256, in_ch=256)  # fmt: skip
gemmini_resnet_conv_s2_7x512 = _sized(conv_bias_s2_i8, "gemmini_resnet_conv_s2_7x512", batch=4, out_dim=7,
                                      out_ch=512, in_ch=512)  # fmt: skip

GEMMINI_LARGE = (
    "gemmini_matmul_512",
    "gemmini_resnet_12544x256x64",
    "gemmini_resnet_12544x64x256",
    "gemmini_resnet_3136x512x128",
    "gemmini_resnet_3136x128x512",
    "gemmini_resnet_784x1024x256",
)
GEMMINI_CONV = (
    "gemmini_resnet_conv_56x64",
    "gemmini_resnet_conv_28x128",
    "gemmini_resnet_conv_14x256",
    "gemmini_resnet_conv_s2_28x128",
    "gemmini_resnet_conv_s2_14x256",
    "gemmini_resnet_conv_s2_7x512",
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


def matmul_bt_reference(v: dict) -> dict:
    import numpy as np

    acc = (v["A"].astype(np.int64) @ v["B"].astype(np.int64).T).astype(np.int32)
    return {"C": _epilogue(acc, v["scale"][0], bool(v["act"]))}


def matmul_at_reference(v: dict) -> dict:
    import numpy as np

    acc = (v["A"].astype(np.int64).T @ v["B"].astype(np.int64)).astype(np.int32)
    return {"C": _epilogue(acc, v["scale"][0], bool(v["act"]))}


def conv2d_reference(v: dict) -> dict:
    import numpy as np

    inp, w = v["inp"].astype(np.int64), v["w"].astype(np.int64)
    oh, ow = inp.shape[0] - 2, inp.shape[1] - 2
    acc = sum(np.einsum("yxc,co->yxo", inp[ky : ky + oh, kx : kx + ow], w[ky, kx]) for ky in range(3) for kx in range(3))
    return {"out": _epilogue(acc.astype(np.int32), v["scale"][0], bool(v["act"]))}


def conv_bias_reference(v: dict) -> dict:
    import numpy as np

    inp, w, od = v["inp"].astype(np.int64), v["weights"].astype(np.int64), v["output"].shape[1]
    step = (inp.shape[1] - 3) // (od - 1) if od > 1 else 1  # 1, or 2 for a stride-2 convolution
    span = step * (od - 1) + 1
    acc = sum(np.einsum("byxc,co->byxo", inp[:, ky : ky + span : step, kx : kx + span : step], w[ky, kx])
              for ky in range(3) for kx in range(3))  # fmt: skip
    acc = acc + v["bias"].astype(np.int64)[0]
    return {"output": _epilogue(acc.astype(np.int32), v["scale"][0], bool(v["act"]))}


def _reference(name: str):
    if name.startswith("gemmini_resnet_conv"):
        return conv_bias_reference
    return conv2d_reference if "conv" in name else matmul_reference


def _product(v: dict) -> "np.ndarray":
    import numpy as np

    return v["A"].astype(np.int64) @ v["B"].astype(np.int64)


def unscaled_reference(v: dict) -> dict:
    """Clamp to i8 without scaling, then ReLU when the kernel has an ``act`` argument and it is true."""
    import numpy as np

    y = np.clip(_product(v), -128, 127)
    return {"C": (np.maximum(y, 0) if v.get("act") else y).astype(np.int8)}


def i32_reference(v: dict) -> dict:
    import numpy as np

    return {"C": _product(v).astype(np.int32)}


def no_act_reference(v: dict) -> dict:
    return {"C": _epilogue(_product(v), v["scale"][0], False)}


# the kernel forms beyond the tables' (`python benchmarks/gemmini_table.py --forms`), with references
gemmini_form_stride2_conv = _sized(conv_bias_s2_i8, "gemmini_form_stride2_conv", batch=1, out_dim=16, out_ch=32,
                                   in_ch=32)  # fmt: skip
gemmini_form_unscaled = _sized(matmul_unscaled, "gemmini_form_unscaled")
gemmini_form_bare_unscaled = _sized(matmul_unscaled_bare, "gemmini_form_bare_unscaled")
gemmini_form_bare_acc_scale = _sized(matmul_no_relu, "gemmini_form_bare_acc_scale")
gemmini_form_i32_out = _sized(matmul_i32_out, "gemmini_form_i32_out")
gemmini_form_k40 = _sized(gemm_i8, "gemmini_form_k40", N=32, M=48, K=40)
gemmini_form_k17 = _sized(gemm_i8, "gemmini_form_k17", N=16, M=16, K=17)
gemmini_form_conv_ic24 = _sized(conv_bias_i8, "gemmini_form_conv_ic24", batch=1, out_dim=7, out_ch=16, in_ch=24)
gemmini_form_bt_512 = _sized(gemm_i8_bt, "gemmini_form_bt_512", N=512, M=512, K=512)
gemmini_form_at_512 = _sized(gemm_i8_at, "gemmini_form_at_512", N=512, M=512, K=512)

FORMS = {
    "gemmini_form_stride2_conv": conv_bias_reference,
    "gemmini_form_unscaled": unscaled_reference,
    "gemmini_form_bare_unscaled": unscaled_reference,
    "gemmini_form_bare_acc_scale": no_act_reference,
    "gemmini_form_i32_out": i32_reference,
    "gemmini_form_k40": matmul_reference,
    "gemmini_form_k17": matmul_reference,
    "gemmini_form_conv_ic24": conv_bias_reference,
    "gemmini_form_bt_512": matmul_bt_reference,
    "gemmini_form_at_512": matmul_at_reference,
}

REFERENCES = {name: _reference(name) for name in GEMMINI_KERNELS + GEMMINI_LARGE + GEMMINI_CONV} | FORMS
