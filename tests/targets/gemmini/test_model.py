"""The Gemmini model (exo_egraph/validate/gemmini): single instructions at the C level against
numpy, capacity errors, and Exo procs written with exo.platforms.gemmini instructions run
bit-exact with the documented cycle count."""

from __future__ import annotations

import ctypes
from functools import lru_cache

import numpy as np
import pytest
from exo import proc
from exo.libs.memories import GEMM_ACCUM, GEMM_SCRATCH
from exo.platforms.gemmini import acc_scale, clamp, ld_i8, matmul_acc_i8, st_acc_i8, st_acc_i32, zero_acc_i32

from benchmarks.kernels.gemmini import matmul_no_relu
from exo_egraph.targets.gemmini.model import (
    HEADER_DIR,
    GemminiModelError,
    compile_model_c,
    model_counters,
    model_error,
    reset_model,
    run_gemmini,
    timing_constants,
    validate_gemmini,
)

T = timing_constants()
DIM = 16
ACC = 0x80000000
ACCUMULATE = 0x40000000
FULL = 0x20000000
GARBAGE = 0xFFFFFFFF

# --------------------------------------------------------------------------------------------
# C-level scenarios, one library; each test resets the model, calls one function, reads back
# --------------------------------------------------------------------------------------------

C_SOURCE = r"""
/* mvin rows x cols (config id 0) from src to `local`, mvout from `out_local` to out */
void t_roundtrip(const void *src, int64_t src_stride, int64_t shrunk, uint32_t local, int64_t cols, int64_t rows,
                 void *out, int64_t out_stride, int64_t act, float scale, uint32_t out_local) {
    gemmini_extended3_config_ld(src_stride, 1.0f, shrunk, 0);
    gemmini_extended_mvin(src, local, cols, rows);
    gemmini_extended_config_st(out_stride, act, scale);
    gemmini_extended_mvout(out, out_local, cols, rows);
}

/* 16x16 data in scratchpad rows 0..15, then zero fill of rows 4..8, columns 0..9 */
void t_zero(const int8_t *src, int8_t *out) {
    gemmini_extended3_config_ld(16, 1.0f, 0, 0);
    gemmini_extended_mvin(src, 0, 16, 16);
    gemmini_extended3_config_ld(0, 1.0f, 0, 0);
    gemmini_extended_mvin(0, 4, 10, 5);
    gemmini_extended_config_st(16, 0, 1.0f);
    gemmini_extended_mvout(out, 0, 16, 16);
}

/* a 64-column mvin2 of `rows` rows to row 0; ext4_stride > 0 configures it with extended4 */
void t_block(const int8_t *src, int64_t rows, int64_t ext4_stride, int8_t *out) {
    if (ext4_stride > 0)
        gemmini_extended4_config_ld(64, 1.0f, 0, ext4_stride, 1);
    else
        gemmini_extended3_config_ld(64, 1.0f, 0, 1);
    gemmini_extended_mvin2(src, 0, 64, rows);
    gemmini_extended_config_st(16, 0, 1.0f);
    for (int b = 0; b < 4; b++)
        gemmini_extended_mvout(out + 16 * 16 * b, 16 * b, 16, 16);
}

/* accumulator rows 0..3: x, then += y (bit 30), then = y */
void t_accumulate(const int32_t *x, const int32_t *y, int32_t *out_add, int32_t *out_over) {
    gemmini_extended3_config_ld(64, 1.0f, 0, 0);
    gemmini_extended_config_st(64, 0, 1.0f);
    gemmini_extended_mvin(x, 0x80000000u, 16, 4);
    gemmini_extended_mvin(y, 0xC0000000u, 16, 4);
    gemmini_extended_mvout(out_add, 0xA0000000u, 16, 4);
    gemmini_extended_mvin(y, 0x80000000u, 16, 4);
    gemmini_extended_mvout(out_over, 0xA0000000u, 16, 4);
}

/* weight-stationary: A rows 0, B rows 16, D rows 32, A2 rows 48 (16x16 each), C = accumulator row 0 */
void t_ws(const int8_t *A, const int8_t *B, const int8_t *D, const int8_t *A2, int64_t N, int64_t K, int64_t M,
          int64_t use_d, int32_t *out1, int32_t *out2, int8_t *out3) {
    gemmini_extended3_config_ld(16, 1.0f, 0, 0);
    gemmini_extended_mvin(A, 0, 16, 16);
    gemmini_extended_mvin(B, 16, 16, 16);
    gemmini_extended_mvin(D, 32, 16, 16);
    gemmini_extended_mvin(A2, 48, 16, 16);
    gemmini_extended_config_ex(WS, 0, 0, 1, 0, 0);
    gemmini_extended_config_st(64, 0, 1.0f);
    gemmini_extended_preload(16, 0x80000000u, M, K, M, N);
    if (use_d)
        gemmini_extended_compute_preloaded(0, 32, K, N, M, N);
    else
        gemmini_extended_compute_preloaded(0, ~((uint32_t)0), K, N, 16, 16);
    gemmini_extended_mvout(out1, 0xA0000000u, 16, 16);
    /* same weights, new output: accumulate A2 * B on top */
    gemmini_extended_preload(~((uint32_t)0), 0xC0000000u, M, K, M, N);
    gemmini_extended_compute_accumulated(48, ~((uint32_t)0), K, N, 16, 16);
    gemmini_extended_mvout(out2, 0xA0000000u, 16, 16);
    /* same weights, output to scratchpad row 64 (saturated to int8) */
    gemmini_extended_preload(~((uint32_t)0), 64, M, K, M, N);
    gemmini_extended_compute_accumulated(0, ~((uint32_t)0), K, N, 16, 16);
    gemmini_extended_config_st(16, 0, 1.0f);
    gemmini_extended_mvout(out3, 64, 16, 16);
}

/* WS with config_ex's transpose bits: A at rows 0, B at rows 16, each stored as given (a
   transposed one: K rows of N, or M rows of K); C = A * B as multiplied, N x M, into the accumulator */
void t_ws_transposed(const int8_t *A, const int8_t *B, int64_t N, int64_t K, int64_t M, int64_t a_t, int64_t b_t,
                     int32_t *out) {
    gemmini_extended3_config_ld(16, 1.0f, 0, 0);
    gemmini_extended_mvin(A, 0, 16, 16);
    gemmini_extended_mvin(B, 16, 16, 16);
    gemmini_extended_config_ex(WS, 0, 0, 1, a_t, b_t);
    gemmini_extended_config_st(64, 0, 1.0f);
    gemmini_extended_preload(16, 0x80000000u, M, K, M, N);
    gemmini_extended_compute_preloaded(0, ~((uint32_t)0), K, N, 16, 16);
    gemmini_extended_mvout(out, 0xA0000000u, 16, 16);
}

/* output-stationary: A rows 0, B rows 16, D rows 32, A2 rows 48, B2 rows 64 */
void t_os(const int8_t *A, const int8_t *B, const int8_t *D, const int8_t *A2, const int8_t *B2, int64_t shift,
          int32_t *before, int32_t *after, int8_t *out_sp) {
    gemmini_extended3_config_ld(16, 1.0f, 0, 0);
    gemmini_extended_mvin(A, 0, 16, 16);
    gemmini_extended_mvin(B, 16, 16, 16);
    gemmini_extended_mvin(D, 32, 16, 16);
    gemmini_extended_mvin(A2, 48, 16, 16);
    gemmini_extended_mvin(B2, 64, 16, 16);
    gemmini_extended_config_ex(OS, 0, 0, 1, 0, 0);
    gemmini_extended_config_st(64, 0, 1.0f);
    gemmini_extended_preload(32, 0x80000000u, 16, 16, 16, 16);
    gemmini_extended_compute_preloaded(0, 16, 16, 16, 16, 16);
    gemmini_extended_compute_accumulated(48, 64, 16, 16, 16, 16);
    gemmini_extended_mvout(before, 0xA0000000u, 16, 16); /* still in the mesh */
    gemmini_fence();
    gemmini_extended_mvout(after, 0xA0000000u, 16, 16);
    /* to the scratchpad: rounding shift, relu, saturation; drained by the next preload */
    gemmini_extended_config_ex(OS, 1, shift, 1, 0, 0);
    gemmini_extended_preload(~((uint32_t)0), 80, 16, 16, 16, 16);
    gemmini_extended_compute_preloaded(0, 16, 16, 16, 16, 16);
    gemmini_extended_preload(~((uint32_t)0), ~((uint32_t)0), 16, 16, 16, 16);
    gemmini_extended_config_st(16, 0, 1.0f);
    gemmini_extended_mvout(out_sp, 80, 16, 16);
}

float t_acc_scale(int32_t x, float scale) { return ACC_SCALE(x, scale); }

void t_alloc(uint32_t *addrs) {
    addrs[0] = gemm_malloc(16 * 16);
    addrs[1] = gemm_malloc(32 * 16);
    gemm_free(addrs[0]);
    addrs[2] = gemm_malloc(8 * 16);  /* first fit: back at row 0 */
    addrs[3] = gemm_malloc(16 * 16); /* the 8-row gap is too small */
    addrs[4] = gemm_acc_malloc(16 * 16 * sizeof(int32_t));
    addrs[5] = gemm_acc_malloc(1 * 16 * sizeof(int32_t));
}

/* rows 16380..16395 do not exist; the later mvout must be a no-op */
void t_out_of_bounds(const int8_t *src, int8_t *out) {
    gemmini_extended3_config_ld(16, 1.0f, 0, 0);
    gemmini_extended_mvin(src, 16380, 16, 16);
    gemmini_extended_config_st(16, 0, 1.0f);
    gemmini_extended_mvout(out, 0, 16, 16);
}

/* decoupled-timing scenarios on 16x16 int8 tiles (one bus beat a row), default configs */
void t_timing(int64_t which, const int8_t *src, int8_t *out) {
    switch (which) {
    case 0: /* two loads of different rows: the DMA pipelines them */
        gemmini_extended_mvin(src, 0, 16, 16);
        gemmini_extended_mvin(src, 16, 16, 16);
        break;
    case 1: /* a load, then a store of its rows: the store waits for the load */
        gemmini_extended_mvin(src, 0, 16, 16);
        gemmini_extended_mvout(out, 0, 16, 16);
        break;
    case 2: /* a load, then a store of other rows: they overlap */
        gemmini_extended_mvin(src, 0, 16, 16);
        gemmini_extended_mvout(out, 16, 16, 16);
        break;
    case 3: /* 8 or 9 loads, then 16 computes on other rows: the 9th load finds the load station
               full, and the host holds the computes back until the first load is done */
    case 4:
        for (int i = 0; i < (which == 3 ? 9 : 8); i++)
            gemmini_extended_mvin(src, 16 * i, 16, 16);
        for (int i = 0; i < 16; i++)
            gemmini_extended_compute_preloaded(2000, GEMMINI_GARBAGE_ADDR, 16, 16, 16, 16);
        break;
    case 5: /* preload (B rows 16..31) + compute (A rows 0..15); a load then overwrites A's rows */
        gemmini_extended_preload(16, GEMMINI_ACC_BIT, 16, 16, 16, 16);
        gemmini_extended_compute_preloaded(0, GEMMINI_GARBAGE_ADDR, 16, 16, 16, 16);
        gemmini_extended_mvin(src, 0, 16, 16);
        break;
    case 6: /* an int32 accumulator tile zeroed by the zero writer */
        gemmini_extended_mvin(0, GEMMINI_ACC_BIT, 16, 16);
        break;
    case 7: /* a load, then a fence */
        gemmini_extended_mvin(src, 0, 16, 16);
        gemmini_fence();
        break;
    case 8: /* a load of A's rows, then a preload (other rows) and a compute that reads them */
        gemmini_extended_mvin(src, 0, 16, 16);
        gemmini_extended_preload(16, GEMMINI_ACC_BIT, 16, 16, 16, 16);
        gemmini_extended_compute_preloaded(0, GEMMINI_GARBAGE_ADDR, 16, 16, 16, 16);
        break;
    }
}

void t_bad_free(void) { gemm_free(7); }
void t_too_many_rows(const int8_t *src) { gemmini_extended_mvin(src, 0, 16, 17); }
"""


@lru_cache(maxsize=None)
def lib() -> ctypes.CDLL:
    library = compile_model_c(C_SOURCE)
    library.t_acc_scale.restype = ctypes.c_float
    library.t_acc_scale.argtypes = [ctypes.c_int32, ctypes.c_float]
    return library


def call(name: str, *args, exo_block_stride: bool = False) -> dict[str, int]:
    """Reset the model, call ``name`` (arrays by pointer, ints as int64, floats as float), return
    the counters; the model must not have failed."""
    reset_model(lib(), exo_block_stride=exo_block_stride)
    getattr(lib(), name)(*map(_c_arg, args))
    assert model_error(lib()) is None
    return model_counters(lib())


def _c_arg(v):
    if isinstance(v, np.ndarray):
        assert v.flags.c_contiguous
        return ctypes.c_void_p(v.ctypes.data)
    if isinstance(v, float):
        return ctypes.c_float(v)
    return ctypes.c_int64(v)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_headers_are_where_exo_looks_for_them():
    assert (HEADER_DIR / "include" / "gemmini.h").is_file()
    assert (HEADER_DIR / "gemm_malloc.h").is_file() and (HEADER_DIR / "gemm_acc_malloc.h").is_file()
    assert T["DIM"] == DIM and T["SP_ROWS"] == 16384 and T["ACC_ROWS"] == 1024 and T["BUS_BYTES"] == 16


def test_strided_mvin_and_mvout():
    src = rng().integers(-128, 128, (12, 40)).astype(np.int8)
    out = np.full((10, 24), 99, np.int8)
    counters = call("t_roundtrip", src, 40, 0, 3, 13, 10, out, 24, 0, 1.0, 3)
    assert (out[:, :13] == src[:10, :13]).all()
    assert (out[:, 13:] == 99).all()  # only rows x cols are written
    assert counters["dma_bytes_in"] == counters["dma_bytes_out"] == 130
    assert counters["cycles_serial"] == 2 * T["CONFIG"] + 2 * (T["DMA_LATENCY"] + 10 * 1)


def test_mvin_from_dram_address_zero_writes_zeros():
    src = rng(1).integers(1, 100, (16, 16)).astype(np.int8)
    out = np.zeros((16, 16), np.int8)
    counters = call("t_zero", src, out)
    want = src.copy()
    want[4:9, :10] = 0
    assert (out == want).all()
    assert counters["mvins_zero"] == 1 and counters["dma_bytes_in"] == 256  # the zero fill reads nothing


@pytest.mark.parametrize(
    "rows, ext4_stride, exo_block_stride, block_rows",
    [
        (16, 0, False, 16),  # extended3: blocks DIM rows apart (== rows here)
        (8, 0, False, 16),  # extended3 on Gemmini: still DIM rows apart
        (8, 0, True, 8),  # the Exo option: `rows` apart
        (8, 8, False, 8),  # extended4: the explicit stride
        (5, 20, False, 20),
    ],
)
def test_block_mvin_spreads_columns_over_blocks(rows, ext4_stride, exo_block_stride, block_rows):
    src = rng(2).integers(-128, 128, (rows, 64)).astype(np.int8)
    out = np.full((64, 16), 99, np.int8)  # scratchpad rows 0..63 after the load
    spad = np.zeros((128, 16), np.int8)
    for b in range(4):
        spad[b * block_rows : b * block_rows + rows] = src[:, 16 * b : 16 * b + 16]
    counters = call("t_block", src, rows, ext4_stride, out, exo_block_stride=exo_block_stride)
    assert (out == spad[:64]).all()
    # one mvin of 64 one-byte columns: 4 bus beats a row
    assert counters["cycles_serial"] == 2 * T["CONFIG"] + T["DMA_LATENCY"] + rows * 4 + 4 * (T["DMA_LATENCY"] + 16)


def test_accumulator_roundtrip_int32_and_shrunk_int8():
    x = rng(3).integers(-(2**31), 2**31, (4, 16), dtype=np.int64).astype(np.int32)
    out = np.zeros((4, 16), np.int32)
    counters = call("t_roundtrip", x, 64, 0, ACC | 7, 16, 4, out, 64, 0, 1.0, ACC | FULL | 7)
    assert (out == x).all()
    assert counters["cycles_serial"] == 2 * T["CONFIG"] + 2 * (T["DMA_LATENCY"] + 4 * 4)  # 64-byte rows
    small = rng(4).integers(-128, 128, (4, 16)).astype(np.int8)  # shrunk: int8 from DRAM, sign-extended
    call("t_roundtrip", small, 16, 1, ACC | 7, 16, 4, out, 64, 0, 1.0, ACC | FULL | 7)
    assert (out == small.astype(np.int32)).all()


def _decoupled(which: int) -> dict[str, int]:
    src, out = np.ones((16 * 9, 16), np.int8), np.zeros((32, 16), np.int8)
    return call("t_timing", which, src, out)


def test_decoupled_model_pipelines_loads_and_waits_only_on_hazards():
    issue, lat, mesh = T["ISSUE"], T["DMA_LATENCY"], T["MESH_LATENCY"]
    load = 16  # 16 rows of 16 int8: one beat each
    two = _decoupled(0)
    assert two["cycles"] == issue + 2 * load + lat  # the second load's beats follow the first's
    assert two["cycles_serial"] == 2 * (lat + load)
    assert _decoupled(1)["cycles"] == issue + load + lat + load + lat  # read-after-write
    assert _decoupled(2)["cycles"] == 2 * issue + load + lat  # no shared rows: the store overlaps
    # write-after-read: the load starts once the compute has read A's rows
    compute = T["COMPUTE"] + 16
    assert _decoupled(5)["cycles"] == 2 * issue + compute + load + lat
    assert _decoupled(6)["cycles"] == issue + 16 * T["ZERO_ROW"]  # no DRAM: a row a cycle
    assert _decoupled(7)["cycles"] == issue + load + lat + T["FENCE"]


def test_a_full_reservation_station_holds_the_host_back():
    lat, compute, entries = T["DMA_LATENCY"], T["COMPUTE"] + 16, T["RS_LD"]
    assert entries == 8
    free, full = _decoupled(4), _decoupled(3)
    # 8 loads: the computes are issued right behind them; a 9th waits for the first load's entry
    first_done = T["ISSUE"] + 16 + lat
    assert free["cycles"] == (entries + 1) * T["ISSUE"] + 16 * compute + T["MESH_LATENCY"]
    assert full["cycles"] == first_done + T["ISSUE"] + 16 * compute + T["MESH_LATENCY"]
    assert full["busy_ex"] == free["busy_ex"] == 16 * compute
    # where the time went: the host waited for the first load's entry, and the execute
    # controller idled until the computes were issued, waiting on no rows
    assert full["host_wait_ld"] == first_done - (entries + 1) * T["ISSUE"] and free["host_wait_ld"] == 0
    assert full["idle_ex_issue"] == first_done + T["ISSUE"] and free["idle_ex_issue"] == (entries + 1) * T["ISSUE"]
    assert full["idle_ex_hazard"] == free["idle_ex_hazard"] == full["host_wait_ex"] == 0


def test_the_execute_controllers_idle_time_is_split_between_issue_and_hazards():
    """A compute that reads a loading tile idles on the hazard until the load is done; before the
    preload was issued, the controller idled on issue."""
    issue, load, lat = T["ISSUE"], 16, T["DMA_LATENCY"]
    run = _decoupled(8)
    load_done = issue + load + lat
    preload_end = 2 * issue + T["PRELOAD"]
    assert run["idle_ex_issue"] == 2 * issue  # the preload is the host's second command
    assert run["idle_ex_hazard"] == load_done - preload_end
    assert run["cycles"] == load_done + T["COMPUTE"] + 16 + T["MESH_LATENCY"]


@pytest.mark.parametrize("act", [0, 1])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.0625, -0.75, 3.0])
def test_mvout_scales_rounds_to_even_saturates_and_relus(scale, act):
    x = np.concatenate(
        [
            np.array([5, 7, -5, -7, 1, 3, -1, -3, 0, 127, 128, -128, -129, 1000, -1000, 2**31 - 1], np.int32),
            rng(5).integers(-400, 400, 48).astype(np.int32),
        ]
    ).reshape(4, 16)
    out = np.zeros((4, 16), np.int8)
    call("t_roundtrip", x, 64, 0, ACC, 16, 4, out, 16, act, scale, ACC)
    y = np.clip(np.rint(x.astype(np.float32) * np.float32(scale)), -128, 127)  # rint: ties to even
    if act:
        y = np.maximum(y, 0)
    assert (out == y.astype(np.int8)).all()
    assert out[0, 0] == (2 if scale == 0.5 else out[0, 0])  # 2.5 -> 2


def test_acc_scale_macro():
    f = lib().t_acc_scale
    assert f(5, 0.5) == 2.0 and f(7, 0.5) == 4.0 and f(-5, 0.5) == -2.0 and f(-7, 0.5) == -4.0
    assert f(1000, 0.25) == 250.0 and f(3, 1.0) == 3.0
    assert f(2**31 - 1, 4.0) == 2.0**31  # saturated to the int32 range (as a float)
    assert f(-(2**31), 4.0) == -(2.0**31)


def test_accumulate_bit_adds_and_wraps_plain_write_overwrites():
    x = rng(6).integers(-1000, 1000, (4, 16)).astype(np.int32)
    x[0, 0] = 2**31 - 1
    y = rng(7).integers(-1000, 1000, (4, 16)).astype(np.int32)
    y[0, 0] = 5
    add, over = np.zeros((4, 16), np.int32), np.zeros((4, 16), np.int32)
    call("t_accumulate", x, y, add, over)
    want = (x.astype(np.int64) + y).astype(np.uint32).astype(np.int32)  # two's-complement wrap
    assert (add == want).all() and add[0, 0] == -(2**31) + 4
    assert (over == y).all()


@pytest.mark.parametrize("N, K, M, use_d", [(16, 16, 16, 0), (13, 11, 9, 0), (10, 16, 7, 1)])
def test_weight_stationary_preload_compute_preloaded_and_accumulated(N, K, M, use_d):
    r = rng(8 + N)
    A, B, D, A2 = (r.integers(-128, 128, (16, 16)).astype(np.int8) for _ in range(4))
    out1, out2 = np.zeros((16, 16), np.int32), np.zeros((16, 16), np.int32)
    out3 = np.zeros((16, 16), np.int8)
    counters = call("t_ws", A, B, D, A2, N, K, M, use_d, out1, out2, out3)
    a, a2, b = A[:N, :K].astype(np.int32), A2[:N, :K].astype(np.int32), B[:K, :M].astype(np.int32)
    want1 = np.zeros((16, 16), np.int32)
    want1[:N, :M] = a @ b + (D[:N, :M].astype(np.int32) if use_d else 0)
    want2 = want1.copy()
    want2[:N, :M] += a2 @ b  # compute_accumulated keeps the weights
    want3 = np.zeros((16, 16), np.int8)
    want3[:N, :M] = np.clip(a @ b, -128, 127)
    assert (out1 == want1).all() and (out2 == want2).all() and (out3 == want3).all()
    assert counters["macs"] == 3 * N * K * M and counters["preloads"] == 3 and counters["computes"] == 3
    exec_cycles = 3 * (T["PRELOAD"] + K) + 3 * (T["COMPUTE"] + N)
    assert counters["cycles_exec"] == exec_cycles


@pytest.mark.parametrize("N, K, M", [(16, 16, 16), (13, 11, 9)])
@pytest.mark.parametrize("a_t, b_t", [(0, 0), (1, 0), (0, 1)])
def test_a_transpose_bit_reads_that_operands_tile_transposed(N, K, M, a_t, b_t):
    """config_ex's A_transpose (B_transpose) bit: the tile stored K rows of N (M rows of K)
    multiplies as its transpose, in the same cycles; partial sizes cut the stored tile's rows and
    columns the other way round."""
    r = rng(30 + N)
    A, B = (r.integers(-128, 128, (16, 16)).astype(np.int8) for _ in range(2))
    out = np.zeros((16, 16), np.int32)
    counters = call("t_ws_transposed", A, B, N, K, M, a_t, b_t, out)
    a = (A[:K, :N].T if a_t else A[:N, :K]).astype(np.int32)
    b = (B[:M, :K].T if b_t else B[:K, :M]).astype(np.int32)
    want = np.zeros((16, 16), np.int32)
    want[:N, :M] = a @ b
    assert (out == want).all()
    assert counters["macs"] == N * K * M and counters["cycles_exec"] == T["PRELOAD"] + K + T["COMPUTE"] + N


def test_transposing_both_operands_is_not_modelled():
    A = B = np.zeros((16, 16), np.int8)
    reset_model(lib())
    lib().t_ws_transposed(*map(_c_arg, (A, B, 16, 16, 16, 1, 1, np.zeros((16, 16), np.int32))))
    assert "transposing both A and B" in (model_error(lib()) or "")


@pytest.mark.parametrize("shift", [0, 3])
def test_output_stationary_accumulates_in_the_mesh_until_drained(shift):
    r = rng(20 + shift)
    A, B, D, A2, B2 = (r.integers(-128, 128, (16, 16)).astype(np.int8) for _ in range(5))
    before, after = np.full((16, 16), 7, np.int32), np.zeros((16, 16), np.int32)
    out_sp = np.zeros((16, 16), np.int8)
    counters = call("t_os", A, B, D, A2, B2, shift, before, after, out_sp)
    i32 = lambda m: m.astype(np.int32)  # noqa: E731
    assert (before == 0).all()  # results leave the mesh only at a preload, fence or config_ex
    assert (after == i32(D) + i32(A) @ i32(B) + i32(A2) @ i32(B2)).all()
    shifted = np.rint((i32(A) @ i32(B)) / 2.0**shift)  # rounding shift, ties to even
    assert (out_sp == np.clip(np.maximum(shifted, 0), -128, 127).astype(np.int8)).all()
    assert counters["macs"] == 3 * 16**3 and counters["fences"] == 1


def test_allocator_first_fit_frees_and_peaks():
    addrs = np.zeros(6, np.uint32)
    counters = call("t_alloc", addrs)
    assert list(addrs[:4]) == [0, 16, 0, 48]
    assert addrs[4] == ACC and addrs[5] == ACC | 16  # accumulator rows of 16 int32, bit 31 set
    assert counters["peak_spad_rows"] == 64 and counters["peak_acc_rows"] == 17


def test_out_of_bounds_access_stops_the_model():
    src = np.ones((16, 16), np.int8)
    out = np.full((16, 16), 5, np.int8)
    reset_model(lib())
    lib().t_out_of_bounds(_c_arg(src), _c_arg(out))
    assert model_error(lib()) == "gemmini model: mvin: scratchpad rows 16380..16395 outside its 16384 rows (256 KiB)"
    assert (out == 5).all()  # later instructions are no-ops
    reset_model(lib())
    assert model_error(lib()) is None
    lib().t_bad_free()
    assert "not the start of a live allocation" in model_error(lib())
    reset_model(lib())
    lib().t_too_many_rows(_c_arg(src))
    assert "exceeds 16 rows" in model_error(lib())


# --------------------------------------------------------------------------------------------
# Exo procs written with exo.platforms.gemmini instructions
# --------------------------------------------------------------------------------------------


@proc
def too_much_scratchpad(A: i8[16, 16]):
    big: i8[20480, 16] @ GEMM_SCRATCH
    ld_i8(16, 16, A, big[0:16, :])


@proc
def two_buffers_overflow(A: i8[16, 16]):
    x: i8[10000, 16] @ GEMM_SCRATCH
    y: i8[10000, 16] @ GEMM_SCRATCH
    ld_i8(16, 16, A, x[0:16, :])
    ld_i8(16, 16, A, y[0:16, :])


@proc
def freed_every_iteration(A: i8[16, 16]):
    for i in seq(0, 4):
        x: i8[10000, 16] @ GEMM_SCRATCH
        ld_i8(16, 16, A, x[0:16, :])


@proc
def too_much_accumulator(A: i8[16, 16]):
    big: i32[1280, 16] @ GEMM_ACCUM
    zero_acc_i32(16, 16, big[0:16, :])


def test_capacity_overflow_raises_with_the_models_message():
    A = {"A": np.zeros((16, 16), np.int8)}
    with pytest.raises(
        GemminiModelError, match=r"^gemmini model: scratchpad overflow: need 20480 rows of 16384 \(256 KiB\)$"
    ):
        run_gemmini(too_much_scratchpad, A)
    with pytest.raises(GemminiModelError, match=r"scratchpad overflow: need 20000 rows of 16384"):
        run_gemmini(two_buffers_overflow, A)
    with pytest.raises(
        GemminiModelError, match=r"^gemmini model: accumulator overflow: need 1280 rows of 1024 \(64 KiB\)$"
    ):
        run_gemmini(too_much_accumulator, A)
    run = run_gemmini(freed_every_iteration, A)  # 10000 rows, freed at the end of each iteration
    assert run.counters["peak_spad_rows"] == 10000 and run.counters["mvins"] == 4


@proc
def tile16(scale: f32, A: i8[16, 16], B: i8[16, 16], C: i8[16, 16], D: i32[16, 16]):
    a: i8[16, 16] @ GEMM_SCRATCH
    b: i8[16, 16] @ GEMM_SCRATCH
    c: i32[16, 16] @ GEMM_ACCUM
    ld_i8(16, 16, A, a)
    ld_i8(16, 16, B, b)
    zero_acc_i32(16, 16, c)
    matmul_acc_i8(16, 16, 16, a, b, c)
    st_acc_i8(16, 16, scale, False, c, C)
    st_acc_i32(16, 16, c, D)


def test_exo_tile_is_bit_exact_and_takes_the_documented_cycles():
    r = rng(30)
    A, B = (r.integers(-128, 128, (16, 16)).astype(np.int8) for _ in range(2))
    scale = np.array([0.01], np.float32)
    run = run_gemmini(
        tile16, {"scale": scale, "A": A, "B": B, "C": np.zeros((16, 16), np.int8), "D": np.zeros((16, 16), np.int32)}
    )
    full = A.astype(np.int32) @ B.astype(np.int32)
    assert (run.outputs["D"] == full).all()
    assert (run.outputs["C"] == np.clip(np.rint(full.astype(np.float32) * scale[0]), -128, 127).astype(np.int8)).all()
    assert (run.outputs["A"] == A).all()
    lat, bus = T["DMA_LATENCY"], T["BUS_BYTES"]
    beats = lambda nbytes: -(-nbytes // bus)  # noqa: E731
    cycles = (
        2 * (T["CONFIG"] + lat + 16 * beats(16))  # ld_i8 x 2: config_ld + mvin of 16 int8 columns
        + T["CONFIG"]
        + lat
        + 16 * beats(16 * 4)  # zero_acc_i32: config_ld + zero mvin of 16 int32 columns
        + T["CONFIG_EX"]
        + T["PRELOAD"]
        + 16
        + T["COMPUTE"]
        + 16  # matmul_acc_i8: config_ex, preload, compute
        + T["CONFIG"]
        + lat
        + 16 * beats(16)  # st_acc_i8: config_st + mvout of int8
        + T["CONFIG"]
        + lat
        + 16 * beats(16 * 4)  # st_acc_i32: config_st + full-width mvout
    )
    assert run.counters["cycles_serial"] == cycles
    assert run.macs == 16**3
    assert run.utilization == pytest.approx(16**3 / (DIM * DIM * run.cycles))
    assert run.cycles < cycles  # the decoupled model overlaps what the serial one adds up
    assert run.counters["mvins"] == 3 and run.counters["mvins_zero"] == 1 and run.counters["mvouts"] == 2
    assert run.counters["dma_bytes_in"] == 2 * 256 and run.counters["dma_bytes_out"] == 256 + 1024
    assert run.counters["peak_spad_rows"] == 32 and run.counters["peak_acc_rows"] == 16


mm32 = matmul_no_relu  # 32³, the accumulator read straight into acc_scale, no ReLU


@proc
def mm32_gemmini(scale: f32, A: i8[32, 32], B: i8[32, 32], C: i8[32, 32]):
    for io in seq(0, 2):
        for jo in seq(0, 2):
            res: i32[16, 16] @ GEMM_ACCUM
            zero_acc_i32(16, 16, res)
            for ko in seq(0, 2):
                a: i8[16, 16] @ GEMM_SCRATCH
                b: i8[16, 16] @ GEMM_SCRATCH
                ld_i8(16, 16, A[16 * io : 16 * io + 16, 16 * ko : 16 * ko + 16], a)
                ld_i8(16, 16, B[16 * ko : 16 * ko + 16, 16 * jo : 16 * jo + 16], b)
                matmul_acc_i8(16, 16, 16, a, b, res)
            st_acc_i8(16, 16, scale, False, res, C[16 * io : 16 * io + 16, 16 * jo : 16 * jo + 16])


@proc
def mm32_gemmini_relu(scale: f32, A: i8[32, 32], B: i8[32, 32], C: i8[32, 32]):
    for io in seq(0, 2):
        for jo in seq(0, 2):
            res: i32[16, 16] @ GEMM_ACCUM
            zero_acc_i32(16, 16, res)
            for ko in seq(0, 2):
                a: i8[16, 16] @ GEMM_SCRATCH
                b: i8[16, 16] @ GEMM_SCRATCH
                ld_i8(16, 16, A[16 * io : 16 * io + 16, 16 * ko : 16 * ko + 16], a)
                ld_i8(16, 16, B[16 * ko : 16 * ko + 16, 16 * jo : 16 * jo + 16], b)
                matmul_acc_i8(16, 16, 16, a, b, res)
            st_acc_i8(16, 16, scale, True, res, C[16 * io : 16 * io + 16, 16 * jo : 16 * jo + 16])


def _mm32_reference(values: dict) -> dict[str, np.ndarray]:
    full = values["A"].astype(np.int32) @ values["B"].astype(np.int32)
    return {"C": np.clip(np.rint(full.astype(np.float32) * values["scale"][0]), -128, 127).astype(np.int8)}


def test_validate_gemmini_against_the_cpu_original_and_a_reference():
    verdict = validate_gemmini(mm32, mm32_gemmini, seed=3, reference=_mm32_reference)
    assert verdict.ok and verdict.exact, verdict.message
    assert verdict.macs == 32**3 and verdict.counters["computes"] == 8
    assert verdict.counters["peak_spad_rows"] == 32 and verdict.counters["peak_acc_rows"] == 16
    assert 0 < verdict.utilization < 1
    wrong = validate_gemmini(mm32, mm32_gemmini_relu, seed=3)  # relu drops the negative outputs
    assert not wrong.ok and not wrong.exact and "output C differs" in wrong.message


def test_validate_gemmini_reports_a_model_error_as_a_failed_validation():
    verdict = validate_gemmini(freed_every_iteration, two_buffers_overflow)
    assert not verdict.ok and "scratchpad overflow" in verdict.message
