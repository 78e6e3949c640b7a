/* include/gemmini.h -- a functional + timing model of Gemmini for host builds (exo-egraph).
 *
 * Exo's Gemmini platform (exo.platforms.gemmini, exo.libs.memories) emits
 *     #include <include/gemmini.h>  #include "gemm_malloc.h"  #include "gemm_acc_malloc.h"
 * and calls the gemmini_* macros below.  Compiled with `-I exo_egraph/validate/gemmini`, the
 * generated C runs on the host: every instruction updates one static model (scratchpad,
 * accumulator, systolic array, configuration registers, allocator, counters).  Semantics follow
 * Gemmini's README (ISA, "Memory Addressing Scheme") with DIM = 16; timing follows
 * gemmini_timing.h.  One translation unit per program: the state is `static`.
 *
 * Addresses.  A local (scratchpad/accumulator) address is a 32-bit ROW address:
 *   bit 31: 1 = accumulator, 0 = scratchpad
 *   bit 30: on an accumulator write, 1 = add to the row instead of overwriting it
 *   bit 29: on an accumulator read (mvout), 1 = raw int32 out, 0 = scaled, activated int8
 *   bits 28..0: the row;  0xFFFFFFFF = GARBAGE (no operand: zeros; no output: discarded).
 * Exo builds them as `(uint32_t)base_row + element_offset/16`, cast to a pointer, so `&x` in the
 * generated code is the row address itself.  DRAM addresses are real host pointers; DRAM
 * address 0 on a mvin writes zeros (Exo's zero_* instructions rely on it).
 *
 * Errors.  Running inside a ctypes-loaded library, the model never exits: the first error
 * (capacity, bounds, unsupported feature) is recorded, every later instruction becomes a no-op,
 * and gemmini_model_error() returns the message (NULL while there is none).
 */
#ifndef EXO_EGRAPH_GEMMINI_H
#define EXO_EGRAPH_GEMMINI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gemmini_timing.h"

#define GEMMINI_DIM GEMMINI_T_DIM
#define GEMMINI_GARBAGE_ADDR ((uint32_t)0xFFFFFFFFu)
#define GEMMINI_ACC_BIT ((uint32_t)0x80000000u)
#define GEMMINI_ACCUMULATE_BIT ((uint32_t)0x40000000u)
#define GEMMINI_FULL_BIT ((uint32_t)0x20000000u)
#define GEMMINI_ROW_MASK ((uint32_t)0x1FFFFFFFu)
#define GEMMINI_MAX_ALLOCS 4096

/* dataflows for gemmini_extended_config_ex; Exo emits `WS` */
#ifndef WS
#define WS 1
#endif
#ifndef OS
#define OS 0
#endif
#ifndef GARBAGE_ADDR
#define GARBAGE_ADDR GEMMINI_GARBAGE_ADDR
#endif

/* ------------------------------------------------------------------------------------------ */
/* state                                                                                       */
/* ------------------------------------------------------------------------------------------ */

enum gemmini_counter_id {
    GEMMINI_C_CYCLES,         /* total cycles of the decoupled model (gemmini_timing.h) */
    GEMMINI_C_CYCLES_SERIAL,  /* total cycles of the serial model */
    GEMMINI_C_MACS,           /* useful multiply-accumulates (see gemmini_timing.h) */
    GEMMINI_C_DMA_BYTES_IN,   /* bytes read from DRAM by mvin (rows * cols * elem_bytes; 0 for zero fill) */
    GEMMINI_C_DMA_BYTES_OUT,  /* bytes written to DRAM by mvout */
    GEMMINI_C_MVINS,          /* mvin/mvin2/mvin3 instructions, zero fills included */
    GEMMINI_C_MVINS_ZERO,     /* of which from DRAM address 0 */
    GEMMINI_C_MVOUTS,
    GEMMINI_C_PRELOADS,
    GEMMINI_C_COMPUTES,       /* compute_preloaded + compute_accumulated */
    GEMMINI_C_CONFIGS,        /* config_ld + config_st + config_ex */
    GEMMINI_C_FENCES,
    GEMMINI_C_CYCLES_DMA,     /* serial cycles of mvin/mvout */
    GEMMINI_C_CYCLES_EXEC,    /* serial cycles of preload/compute */
    GEMMINI_C_CYCLES_OTHER,   /* serial cycles of config_* and fence */
    GEMMINI_C_BUSY_LD,        /* decoupled: cycles the load controller is occupied */
    GEMMINI_C_BUSY_EX,        /* decoupled: cycles the execute controller is occupied */
    GEMMINI_C_BUSY_ST,        /* decoupled: cycles the store controller is occupied */
    GEMMINI_C_IDLE_EX_ISSUE,  /* decoupled: cycles the execute controller idles, its next command not yet issued */
    GEMMINI_C_IDLE_EX_HAZARD, /* decoupled: ... issued, waiting on rows another controller still writes or reads
                                 (or on a drain) */
    GEMMINI_C_HOST_WAIT_LD,   /* decoupled: cycles the host waits for a free load-station entry */
    GEMMINI_C_HOST_WAIT_EX,   /* ... execute-station entry */
    GEMMINI_C_HOST_WAIT_ST,   /* ... store-station entry */
    GEMMINI_C_PEAK_SPAD_ROWS, /* high-water mark of allocated scratchpad rows */
    GEMMINI_C_PEAK_ACC_ROWS,  /* high-water mark of allocated accumulator rows */
    GEMMINI_C_COUNT
};

static const char *const gemmini_counter_names[GEMMINI_C_COUNT] = {
    "cycles", "cycles_serial", "macs", "dma_bytes_in", "dma_bytes_out", "mvins", "mvins_zero", "mvouts",
    "preloads", "computes", "configs", "fences", "cycles_dma", "cycles_exec", "cycles_other",
    "busy_ld", "busy_ex", "busy_st", "idle_ex_issue", "idle_ex_hazard", "host_wait_ld", "host_wait_ex",
    "host_wait_st",
    "peak_spad_rows", "peak_acc_rows",
};

typedef struct {
    uint64_t stride;       /* DRAM bytes between rows */
    float scale;           /* mvin scale; only 1.0 is modelled */
    int shrunk;            /* accumulator mvin reads int8 from DRAM */
    uint32_t block_stride; /* rows between the DIM-column blocks of a wide mvin */
    int block_stride_is_rows; /* (Exo block-stride option) blocks are `rows` apart instead */
} gemmini_load_config;

typedef struct {
    uint32_t start, rows;
} gemmini_block;

typedef struct {
    uint32_t rows;  /* capacity */
    const char *name;
    unsigned kib;
    gemmini_block live[GEMMINI_MAX_ALLOCS]; /* live allocations, sorted by start */
    int n_live;
    uint32_t peak;
} gemmini_heap;

/* the decoupled model's clocks (see gemmini_timing.h): per controller, per reservation-station
   entry and per scratchpad/accumulator row, the cycle something completes */
enum { GEMMINI_Q_LD, GEMMINI_Q_EX, GEMMINI_Q_ST, GEMMINI_Q_COUNT };
#define GEMMINI_RS_MAX 16
typedef struct {
    long long host;                                 /* cycle the host issued its last command */
    long long free_at[GEMMINI_Q_COUNT];             /* cycle each controller may start its next command */
    long long drained[GEMMINI_Q_COUNT];             /* latest completion per controller */
    long long entry[GEMMINI_Q_COUNT][GEMMINI_RS_MAX]; /* completions of the last RS_* commands, a ring */
    long long issued[GEMMINI_Q_COUNT];              /* commands per controller (the ring's index) */
    long long end;                                  /* latest completion of any command */
    long long sp_w[GEMMINI_Q_COUNT][GEMMINI_T_SP_ROWS], sp_r[GEMMINI_Q_COUNT][GEMMINI_T_SP_ROWS];
    long long acc_w[GEMMINI_Q_COUNT][GEMMINI_T_ACC_ROWS], acc_r[GEMMINI_Q_COUNT][GEMMINI_T_ACC_ROWS];
} gemmini_timeline;

typedef struct {
    int8_t sp[GEMMINI_T_SP_ROWS][GEMMINI_DIM];
    int32_t acc[GEMMINI_T_ACC_ROWS][GEMMINI_DIM];

    gemmini_load_config ld[3];
    uint64_t st_stride;
    int st_act;
    float st_scale;

    int dataflow; /* WS or OS */
    int ex_act;   /* activation applied when the mesh writes to the scratchpad (0 none, 1 relu) */
    uint32_t sys_shift, a_stride;
    int a_transpose; /* WS: the A tile is stored transposed (A_cols rows of A_rows) */
    int b_transpose; /* WS: the preloaded B tile is stored transposed (BD_cols rows of BD_rows) */

    /* systolic array: weights (WS) or partial sums (OS) */
    int32_t pe[GEMMINI_DIM][GEMMINI_DIM];
    uint32_t w_cols; /* WS: columns of the installed weights (0 if GARBAGE), for the MAC count */
    /* last preload: B (WS) / D (OS) operand and the output C */
    uint32_t pre_addr, pre_cols, pre_rows;
    uint32_t out_addr, out_cols, out_rows;
    int os_pending; /* OS: results sit in the mesh until the next preload / fence / flush / config_ex */

    gemmini_heap spad_heap, acc_heap;
    gemmini_timeline clock;
    long long counters[GEMMINI_C_COUNT];
    int exo_block_stride; /* see gemmini_model_set_exo_block_stride */
    int ready;            /* initialised (lazily, or by gemmini_model_reset) */
    int failed;
    char message[512];
} gemmini_model_state;

static gemmini_model_state gemmini_model;

/* power-on state: zeroed memories, default configs (DIM-byte strides, scale 1, WS), empty heaps,
   zero counters; keeps the Exo block-stride option */
static inline void gemmini_model_reset_state(void) {
    int exo_block = gemmini_model.exo_block_stride;
    memset(&gemmini_model, 0, sizeof gemmini_model);
    gemmini_model.exo_block_stride = exo_block;
    for (int i = 0; i < 3; i++) {
        gemmini_model.ld[i].stride = GEMMINI_DIM;
        gemmini_model.ld[i].scale = 1.0f;
        gemmini_model.ld[i].block_stride = GEMMINI_DIM;
    }
    gemmini_model.st_stride = GEMMINI_DIM;
    gemmini_model.st_scale = 1.0f;
    gemmini_model.dataflow = WS;
    gemmini_model.a_stride = 1;
    gemmini_model.pre_addr = gemmini_model.out_addr = GEMMINI_GARBAGE_ADDR;
    gemmini_model.spad_heap.rows = GEMMINI_T_SP_ROWS;
    gemmini_model.spad_heap.name = "scratchpad";
    gemmini_model.spad_heap.kib = GEMMINI_T_SP_ROWS * GEMMINI_DIM / 1024;
    gemmini_model.acc_heap.rows = GEMMINI_T_ACC_ROWS;
    gemmini_model.acc_heap.name = "accumulator";
    gemmini_model.acc_heap.kib = GEMMINI_T_ACC_ROWS * GEMMINI_DIM * 4 / 1024;
    gemmini_model.ready = 1;
}

/* every instruction starts here: initialise on first use; after an error do nothing */
static inline int gemmini_model_live(void) {
    if (!gemmini_model.ready)
        gemmini_model_reset_state();
    return !gemmini_model.failed;
}

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static inline void gemmini_model_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void gemmini_model_fail(const char *fmt, ...) {
    if (gemmini_model.failed)
        return; /* keep the first error */
    int n = snprintf(gemmini_model.message, sizeof gemmini_model.message, "gemmini model: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(gemmini_model.message + n, sizeof gemmini_model.message - (size_t)n, fmt, ap);
    va_end(ap);
    gemmini_model.failed = 1;
}

static inline uint64_t gemmini_ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* the serial model: every instruction's cycles add up */
static inline void gemmini_add_cycles(enum gemmini_counter_id part, long long cycles) {
    gemmini_model.counters[GEMMINI_C_CYCLES_SERIAL] += cycles;
    gemmini_model.counters[part] += cycles;
}

/* the decoupled model ------------------------------------------------------------------------ */

/* rows a command touches: `rows` rows `stride` apart from `addr` (an address as the ISA has it:
   accumulator bit, GARBAGE), repeated for `blocks` blocks `block_stride` rows apart */
typedef struct {
    uint32_t addr;
    uint64_t rows, stride, blocks, block_stride;
} gemmini_span;

static inline gemmini_span gemmini_rows(uint32_t addr, uint64_t rows) {
    gemmini_span s = {addr, rows, 1, 1, 0};
    return s;
}

static inline long long gemmini_max(long long a, long long b) { return a > b ? a : b; }

/* the cycle the rows of `s` are free for controller q: written by every other controller, and
   (for a write) read by every other controller */
static inline long long gemmini_span_ready(const gemmini_span *s, int q, int write) {
    if (s->addr == GEMMINI_GARBAGE_ADDR || s->rows == 0)
        return 0;
    gemmini_timeline *c = &gemmini_model.clock;
    int acc = (s->addr & GEMMINI_ACC_BIT) != 0;
    uint64_t base = s->addr & GEMMINI_ROW_MASK;
    long long t = 0;
    for (uint64_t b = 0; b < s->blocks; b++) {
        for (uint64_t r = 0; r < s->rows; r++) {
            uint64_t row = base + b * s->block_stride + r * s->stride;
            for (int o = 0; o < GEMMINI_Q_COUNT; o++) {
                if (o == q)
                    continue;
                t = gemmini_max(t, acc ? c->acc_w[o][row] : c->sp_w[o][row]);
                if (write)
                    t = gemmini_max(t, acc ? c->acc_r[o][row] : c->sp_r[o][row]);
            }
        }
    }
    return t;
}

static inline void gemmini_span_mark(const gemmini_span *s, int q, int write, long long at) {
    if (s->addr == GEMMINI_GARBAGE_ADDR || s->rows == 0)
        return;
    gemmini_timeline *c = &gemmini_model.clock;
    int acc = (s->addr & GEMMINI_ACC_BIT) != 0;
    uint64_t base = s->addr & GEMMINI_ROW_MASK;
    for (uint64_t b = 0; b < s->blocks; b++) {
        for (uint64_t r = 0; r < s->rows; r++) {
            uint64_t row = base + b * s->block_stride + r * s->stride;
            long long *slot = acc ? (write ? &c->acc_w[q][row] : &c->acc_r[q][row])
                                  : (write ? &c->sp_w[q][row] : &c->sp_r[q][row]);
            *slot = gemmini_max(*slot, at);
        }
    }
}

/* one command through controller q: occupancy, then its reads are done `read_end` cycles and
   its writes (and the command) `done_end` cycles after it starts; `after` = an earliest start */
static inline void gemmini_timed(int q, long long occupancy, long long read_end, long long done_end, long long after,
                                 const gemmini_span *reads, int n_reads, const gemmini_span *writes, int n_writes) {
    static const int entries[GEMMINI_Q_COUNT] = {GEMMINI_T_RS_LD, GEMMINI_T_RS_EX, GEMMINI_T_RS_ST};
    gemmini_timeline *c = &gemmini_model.clock;
    long long *entry = &c->entry[q][c->issued[q] % entries[q]];
    long long dispatch = gemmini_max(c->host + GEMMINI_T_ISSUE, *entry); /* the host waits for a free entry */
    gemmini_model.counters[GEMMINI_C_HOST_WAIT_LD + q] += dispatch - (c->host + GEMMINI_T_ISSUE);
    c->host = dispatch;
    long long start = gemmini_max(gemmini_max(dispatch, c->free_at[q]), after);
    for (int i = 0; i < n_reads; i++)
        start = gemmini_max(start, gemmini_span_ready(&reads[i], q, 0));
    for (int i = 0; i < n_writes; i++)
        start = gemmini_max(start, gemmini_span_ready(&writes[i], q, 1));
    if (q == GEMMINI_Q_EX && start > c->free_at[q]) { /* where the execute controller's idle time goes */
        long long issued = gemmini_max(dispatch, c->free_at[q]);
        gemmini_model.counters[GEMMINI_C_IDLE_EX_ISSUE] += issued - c->free_at[q];
        gemmini_model.counters[GEMMINI_C_IDLE_EX_HAZARD] += start - issued;
    }
    long long done = start + gemmini_max(occupancy, gemmini_max(read_end, done_end));
    for (int i = 0; i < n_reads; i++)
        gemmini_span_mark(&reads[i], q, 0, start + read_end);
    for (int i = 0; i < n_writes; i++)
        gemmini_span_mark(&writes[i], q, 1, done);
    c->free_at[q] = start + occupancy;
    *entry = done;
    c->issued[q]++;
    c->drained[q] = gemmini_max(c->drained[q], done);
    c->end = gemmini_max(c->end, done);
    gemmini_model.counters[GEMMINI_C_BUSY_LD + q] += occupancy;
}

/* round to nearest, ties to even, in float; needs no libm (|x| < 2^23 has a fractional part
   only there, and adding 2^23 rounds it away under the default rounding mode) */
static inline float gemmini_round_near_even(float x) {
    if (x != x)
        return x;
    float ax = x < 0 ? -x : x;
    if (ax >= 8388608.0f)
        return x;
    float r = (ax + 8388608.0f) - 8388608.0f;
    return x < 0 ? -r : r;
}

/* ACC_SCALE: Gemmini's float accumulator scaling of the default config: x * scale computed in
   float, rounded to nearest even, saturated to the int32 range, returned as an integral float.
   NaN (only from a NaN scale) gives 0. */
static inline float gemmini_acc_scale(int32_t x, float scale) {
    float y = gemmini_round_near_even((float)x * scale);
    if (y != y)
        return 0.0f;
    if (y > 2147483648.0f)
        return 2147483648.0f; /* (float)INT32_MAX */
    if (y < -2147483648.0f)
        return -2147483648.0f;
    return y;
}
#define ACC_SCALE(x, scale) gemmini_acc_scale((int32_t)(x), (float)(scale))

static inline int8_t gemmini_saturate_i8(int64_t v) {
    return (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
}

/* rounding right shift, ties to even (used on OS results leaving the mesh) */
static inline int32_t gemmini_shift_round(int32_t x, uint32_t shift) {
    if (shift == 0)
        return x;
    if (shift > 31)
        shift = 31;
    int64_t v = x, q = v >> shift, rem = v - (q << shift), half = (int64_t)1 << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q += 1;
    return (int32_t)q;
}

static inline const char *gemmini_space(int acc) { return acc ? "accumulator" : "scratchpad"; }

/* are rows [first, last] inside the scratchpad or the accumulator? */
static inline int gemmini_check_rows(const char *what, int acc, uint64_t first, uint64_t last) {
    uint64_t cap = acc ? GEMMINI_T_ACC_ROWS : GEMMINI_T_SP_ROWS;
    if (last >= cap || first >= cap) {
        gemmini_model_fail("%s: %s rows %llu..%llu outside its %llu rows (%u KiB)", what, gemmini_space(acc),
                           (unsigned long long)first, (unsigned long long)last, (unsigned long long)cap,
                           acc ? (unsigned)(GEMMINI_T_ACC_ROWS * GEMMINI_DIM * 4 / 1024)
                               : (unsigned)(GEMMINI_T_SP_ROWS * GEMMINI_DIM / 1024));
        return 0;
    }
    return 1;
}

/* an operand of the mesh (A, B, D): scratchpad rows base + stride*i, i < rows */
static inline int gemmini_check_operand(const char *what, uint32_t addr, uint32_t rows, uint32_t stride) {
    if (addr == GEMMINI_GARBAGE_ADDR || rows == 0)
        return 1;
    if (addr & GEMMINI_ACC_BIT) {
        gemmini_model_fail("%s: operands read from the accumulator are not modelled (address 0x%08x)", what,
                           (unsigned)addr);
        return 0;
    }
    uint64_t row = addr & GEMMINI_ROW_MASK;
    return gemmini_check_rows(what, 0, row, row + (uint64_t)stride * (rows - 1));
}

static inline int gemmini_check_dims(const char *what, uint64_t cols, uint64_t rows) {
    if (cols > GEMMINI_DIM || rows > GEMMINI_DIM) {
        gemmini_model_fail("%s: %llu x %llu exceeds DIM = %d", what, (unsigned long long)rows,
                           (unsigned long long)cols, GEMMINI_DIM);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* allocator (gemm_malloc.h / gemm_acc_malloc.h): first fit over live blocks, any free order   */
/* ------------------------------------------------------------------------------------------ */

static inline uint32_t gemmini_heap_alloc(gemmini_heap *h, uint64_t rows) {
    if (!gemmini_model_live())
        return 0;
    if (rows == 0)
        rows = 1; /* keep every allocation distinct */
    uint64_t at = 0;
    int i = 0;
    for (; i < h->n_live; i++) {
        if (h->live[i].start >= at + rows)
            break;
        uint64_t end = (uint64_t)h->live[i].start + h->live[i].rows;
        if (end > at)
            at = end;
    }
    if (at + rows > h->rows) {
        gemmini_model_fail("%s overflow: need %llu rows of %u (%u KiB)", h->name, (unsigned long long)(at + rows),
                           (unsigned)h->rows, h->kib);
        return 0;
    }
    if (h->n_live == GEMMINI_MAX_ALLOCS) {
        gemmini_model_fail("%s: more than %d live allocations", h->name, GEMMINI_MAX_ALLOCS);
        return 0;
    }
    memmove(&h->live[i + 1], &h->live[i], (size_t)(h->n_live - i) * sizeof h->live[0]);
    h->live[i].start = (uint32_t)at;
    h->live[i].rows = (uint32_t)rows;
    h->n_live++;
    if (at + rows > h->peak)
        h->peak = (uint32_t)(at + rows);
    return (uint32_t)at;
}

static inline void gemmini_heap_free(gemmini_heap *h, uint32_t row) {
    if (!gemmini_model_live())
        return;
    for (int i = 0; i < h->n_live; i++) {
        if (h->live[i].start == row) {
            memmove(&h->live[i], &h->live[i + 1], (size_t)(h->n_live - i - 1) * sizeof h->live[0]);
            h->n_live--;
            return;
        }
    }
    gemmini_model_fail("%s free of row %u, which is not the start of a live allocation", h->name, (unsigned)row);
}

/* bytes -> rows of DIM int8; returns the scratchpad row address */
static inline uint32_t gemm_malloc(long unsigned int size) {
    return gemmini_heap_alloc(&gemmini_model.spad_heap, gemmini_ceil_div(size, GEMMINI_DIM));
}
static inline void gemm_free(uint64_t addr) {
    gemmini_heap_free(&gemmini_model.spad_heap, (uint32_t)addr & GEMMINI_ROW_MASK);
}
/* bytes -> rows of DIM int32; returns the accumulator row address, bit 31 set */
static inline uint32_t gemm_acc_malloc(long unsigned int size) {
    if (!gemmini_model_live())
        return GEMMINI_ACC_BIT;
    return GEMMINI_ACC_BIT | gemmini_heap_alloc(&gemmini_model.acc_heap, gemmini_ceil_div(size, GEMMINI_DIM * 4));
}
static inline void gemm_acc_free(uint32_t addr) { gemmini_heap_free(&gemmini_model.acc_heap, addr & GEMMINI_ROW_MASK); }
/* Exo's Gemmini tests call these before running; the model is reset from Python instead */
static inline void gemm_init_mem(void) {}
static inline void gemm_acc_init_mem(void) {}

/* ------------------------------------------------------------------------------------------ */
/* model control (exported: the library is loaded with ctypes)                                */
/* ------------------------------------------------------------------------------------------ */

#ifndef GEMMINI_MODEL_NO_EXPORTS
#define GEMMINI_EXPORT __attribute__((visibility("default"), used))

/* Exo's block loads: by default a wide mvin configured by gemmini_extended3_config_ld puts its
   DIM-column blocks DIM rows apart, as Gemmini's gemmini_extended3_config_ld passes
   block_mvin_stride = DIM.  With `on`, such blocks are `rows` apart instead (the reading of Exo's
   ld_i8_block body for a dense [m, n, 16] destination).  gemmini_extended4_config_ld's explicit
   stride is used either way.  Takes effect at the next config_ld; survives gemmini_model_reset. */
GEMMINI_EXPORT void gemmini_model_set_exo_block_stride(int on) {
    (void)gemmini_model_live();
    gemmini_model.exo_block_stride = on != 0;
}

GEMMINI_EXPORT void gemmini_model_reset(void) { gemmini_model_reset_state(); }

/* NULL while no error occurred */
GEMMINI_EXPORT const char *gemmini_model_error(void) { return gemmini_model.failed ? gemmini_model.message : NULL; }

GEMMINI_EXPORT int gemmini_model_counter_count(void) { return GEMMINI_C_COUNT; }
GEMMINI_EXPORT const char *gemmini_model_counter_name(int i) {
    return i >= 0 && i < GEMMINI_C_COUNT ? gemmini_counter_names[i] : NULL;
}
GEMMINI_EXPORT long long gemmini_model_counter_value(int i) {
    gemmini_model.counters[GEMMINI_C_PEAK_SPAD_ROWS] = gemmini_model.spad_heap.peak;
    gemmini_model.counters[GEMMINI_C_PEAK_ACC_ROWS] = gemmini_model.acc_heap.peak;
    gemmini_model.counters[GEMMINI_C_CYCLES] = gemmini_max(gemmini_model.clock.end, gemmini_model.clock.host);
    return i >= 0 && i < GEMMINI_C_COUNT ? gemmini_model.counters[i] : 0;
}
#endif /* GEMMINI_MODEL_NO_EXPORTS */

/* ------------------------------------------------------------------------------------------ */
/* configuration                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* config_mvin: stride in bytes, mvin scale, shrunk (accumulator mvin of int8), block stride (rows
   between the DIM-column blocks of a wide mvin), id 0/1/2 = mvin/mvin2/mvin3 */
static inline void gemmini_model_config_ld(uint64_t stride, float scale, int shrunk, uint32_t block_stride, int id,
                                           int extended3) {
    if (!gemmini_model_live())
        return;
    if (id < 0 || id > 2) {
        gemmini_model_fail("config_ld: id %d is not 0, 1 or 2", id);
        return;
    }
    gemmini_load_config *c = &gemmini_model.ld[id];
    c->stride = stride;
    c->scale = scale;
    c->shrunk = shrunk != 0;
    c->block_stride = block_stride;
    c->block_stride_is_rows = extended3 && gemmini_model.exo_block_stride;
    gemmini_model.counters[GEMMINI_C_CONFIGS] += 1;
    gemmini_add_cycles(GEMMINI_C_CYCLES_OTHER, GEMMINI_T_CONFIG);
    gemmini_timed(GEMMINI_Q_LD, GEMMINI_T_CONFIG, 0, GEMMINI_T_CONFIG, 0, NULL, 0, NULL, 0);
}
#define gemmini_extended4_config_ld(stride, scale, shrunk, block_mvin_stride, id)                                    \
    gemmini_model_config_ld((uint64_t)(stride), (float)(scale), (int)(shrunk), (uint32_t)(block_mvin_stride),       \
                            (int)(id), 0)
/* block_mvin_stride = DIM, as in Gemmini's own gemmini.h (see gemmini_model_set_exo_block_stride) */
#define gemmini_extended3_config_ld(stride, scale, shrunk, id)                                                       \
    gemmini_model_config_ld((uint64_t)(stride), (float)(scale), (int)(shrunk), GEMMINI_DIM, (int)(id), 1)
#define gemmini_extended2_config_ld(stride, scale, shrunk) gemmini_extended3_config_ld(stride, scale, shrunk, 0)
#define gemmini_extended_config_ld(stride, scale) gemmini_extended2_config_ld(stride, scale, 0)
#define gemmini_config_ld(stride) gemmini_extended_config_ld(stride, 1.0f)

/* config_mvout: stride in bytes, activation on accumulator reads (0 none, 1 relu), scale */
static inline void gemmini_model_config_st(uint64_t stride, int act, float scale) {
    if (!gemmini_model_live())
        return;
    if (act != 0 && act != 1) {
        gemmini_model_fail("config_st: activation %d is not modelled (0 = none, 1 = relu)", act);
        return;
    }
    gemmini_model.st_stride = stride;
    gemmini_model.st_act = act;
    gemmini_model.st_scale = scale;
    gemmini_model.counters[GEMMINI_C_CONFIGS] += 1;
    gemmini_add_cycles(GEMMINI_C_CYCLES_OTHER, GEMMINI_T_CONFIG);
    gemmini_timed(GEMMINI_Q_ST, GEMMINI_T_CONFIG, 0, GEMMINI_T_CONFIG, 0, NULL, 0, NULL, 0);
}
#define gemmini_extended_config_st(stride, acc_act, acc_scale)                                                      \
    gemmini_model_config_st((uint64_t)(stride), (int)(acc_act), (float)(acc_scale))
#define gemmini_config_st(stride) gemmini_extended_config_st(stride, 0, 1.0f)

static inline void gemmini_model_drain(void);

/* config_ex: dataflow (OS 0 / WS 1), activation on mesh -> scratchpad writes, OS result shift,
   A_stride (scratchpad rows between stored A rows), A/B transposition. MODEL ASSUMPTION: in WS,
   either bit (Gemmini's README: config_ex's A_transpose and B_transpose) makes the mesh read that
   operand's tile transposed, at no cost: a compute still takes COMPUTE + A_rows cycles (the rows
   fed to the mesh), and its hazards cover the rows the tile is stored in. Transposing both at
   once, or either outside WS, is not modelled. */
static inline void gemmini_model_config_ex(int dataflow, int act, uint32_t sys_shift, uint32_t a_stride, int a_t,
                                           int b_t) {
    if (!gemmini_model_live())
        return;
    if (dataflow != WS && dataflow != OS) {
        gemmini_model_fail("config_ex: dataflow %d is neither OS (0) nor WS (1)", dataflow);
        return;
    }
    if (act != 0 && act != 1) {
        gemmini_model_fail("config_ex: activation %d is not modelled (0 = none, 1 = relu)", act);
        return;
    }
    if ((a_t && b_t) || ((a_t || b_t) && dataflow != WS)) {
        gemmini_model_fail("config_ex: transposing both A and B, or either outside WS, is not modelled");
        return;
    }
    gemmini_model_drain(); /* the mesh drains before the dataflow changes */
    gemmini_model.dataflow = dataflow;
    gemmini_model.ex_act = act;
    gemmini_model.sys_shift = sys_shift;
    gemmini_model.a_stride = a_stride;
    gemmini_model.a_transpose = a_t;
    gemmini_model.b_transpose = b_t;
    gemmini_model.counters[GEMMINI_C_CONFIGS] += 1;
    gemmini_add_cycles(GEMMINI_C_CYCLES_OTHER, GEMMINI_T_CONFIG_EX);
    gemmini_timed(GEMMINI_Q_EX, GEMMINI_T_CONFIG, 0, GEMMINI_T_CONFIG, gemmini_model.clock.drained[GEMMINI_Q_EX], NULL, 0,
                  NULL, 0);
}
#define gemmini_extended_config_ex(dataflow, act, sys_shift, A_stride, A_transpose, B_transpose)                      \
    gemmini_model_config_ex((int)(dataflow), (int)(act), (uint32_t)(sys_shift), (uint32_t)(A_stride),              \
                            (int)(A_transpose), (int)(B_transpose))
#define gemmini_config_ex(dataflow, act, sys_shift) gemmini_extended_config_ex(dataflow, act, sys_shift, 1, 0, 0)

/* ------------------------------------------------------------------------------------------ */
/* data movement                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* mvin (config id 0/1/2): rows x cols from DRAM (row r at dram + r * stride bytes) to local
   rows; column c lands in block c / DIM, `block_stride` rows further per block */
static inline void gemmini_model_mvin(int id, uint64_t dram, uint32_t local, uint64_t cols, uint64_t rows) {
    if (!gemmini_model_live())
        return;
    const gemmini_load_config *c = &gemmini_model.ld[id];
    static const char *const names[3] = {"mvin", "mvin2", "mvin3"};
    const char *what = names[id];
    if (local == GEMMINI_GARBAGE_ADDR) {
        gemmini_model_fail("%s: destination is the GARBAGE address", what);
        return;
    }
    int acc = (local & GEMMINI_ACC_BIT) != 0, accumulate = (local & GEMMINI_ACCUMULATE_BIT) != 0;
    uint64_t row0 = local & GEMMINI_ROW_MASK;
    uint64_t elem = acc && !c->shrunk ? 4 : 1;
    uint64_t max_cols = (GEMMINI_T_DMA_MAXBYTES / (GEMMINI_DIM * elem)) * GEMMINI_DIM;
    if (rows > GEMMINI_DIM || cols > max_cols) {
        gemmini_model_fail("%s: %llu rows x %llu cols exceeds %d rows x %llu cols", what, (unsigned long long)rows,
                           (unsigned long long)cols, GEMMINI_DIM, (unsigned long long)max_cols);
        return;
    }
    if (c->scale != 1.0f) {
        gemmini_model_fail("%s: mvin scaling (scale %g) is not modelled", what, (double)c->scale);
        return;
    }
    uint64_t block_stride = c->block_stride_is_rows ? rows : c->block_stride;
    uint64_t blocks = gemmini_ceil_div(cols, GEMMINI_DIM);
    if (rows && cols && !gemmini_check_rows(what, acc, row0, row0 + rows - 1 + (blocks - 1) * block_stride))
        return;
    for (uint64_t r = 0; r < rows; r++) {
        for (uint64_t j = 0; j < cols; j++) {
            uint64_t row = row0 + r + (j / GEMMINI_DIM) * block_stride, col = j % GEMMINI_DIM;
            const void *src = (const void *)(uintptr_t)(dram + r * c->stride + j * elem);
            if (acc) {
                int32_t v = 0;
                if (dram && elem == 4) {
                    memcpy(&v, src, 4);
                } else if (dram) {
                    int8_t b;
                    memcpy(&b, src, 1);
                    v = b;
                }
                gemmini_model.acc[row][col] =
                    accumulate ? (int32_t)((uint32_t)gemmini_model.acc[row][col] + (uint32_t)v) : v;
            } else {
                int8_t b = 0;
                if (dram)
                    memcpy(&b, src, 1);
                gemmini_model.sp[row][col] = b;
            }
        }
    }
    /* timing: DMA_LATENCY + rows * ceil(cols * elem / BUS_BYTES) */
    gemmini_model.counters[GEMMINI_C_MVINS] += 1;
    if (dram)
        gemmini_model.counters[GEMMINI_C_DMA_BYTES_IN] += (long long)(rows * cols * elem);
    else
        gemmini_model.counters[GEMMINI_C_MVINS_ZERO] += 1;
    long long beats = (long long)(rows * gemmini_ceil_div(cols * elem, GEMMINI_T_BUS_BYTES));
    gemmini_add_cycles(GEMMINI_C_CYCLES_DMA, GEMMINI_T_DMA_LATENCY + beats);
    gemmini_span dst = {local, rows, 1, blocks, block_stride};
    if (dram)
        gemmini_timed(GEMMINI_Q_LD, beats, 0, beats + GEMMINI_T_DMA_LATENCY, 0, NULL, 0, &dst, 1);
    else
        gemmini_timed(GEMMINI_Q_LD, (long long)rows * GEMMINI_T_ZERO_ROW, 0, (long long)rows * GEMMINI_T_ZERO_ROW, 0,
                      NULL, 0, &dst, 1);
}
#define gemmini_extended_mvin(dram_addr, spad_addr, cols, rows)                                                     \
    gemmini_model_mvin(0, (uint64_t)(uintptr_t)(dram_addr), (uint32_t)(uint64_t)(spad_addr), (uint64_t)(cols),      \
                       (uint64_t)(rows))
#define gemmini_extended_mvin2(dram_addr, spad_addr, cols, rows)                                                    \
    gemmini_model_mvin(1, (uint64_t)(uintptr_t)(dram_addr), (uint32_t)(uint64_t)(spad_addr), (uint64_t)(cols),      \
                       (uint64_t)(rows))
#define gemmini_extended_mvin3(dram_addr, spad_addr, cols, rows)                                                    \
    gemmini_model_mvin(2, (uint64_t)(uintptr_t)(dram_addr), (uint32_t)(uint64_t)(spad_addr), (uint64_t)(cols),      \
                       (uint64_t)(rows))
#define gemmini_mvin(dram_addr, spad_addr) gemmini_extended_mvin(dram_addr, spad_addr, GEMMINI_DIM, GEMMINI_DIM)
#define gemmini_mvin2(dram_addr, spad_addr) gemmini_extended_mvin2(dram_addr, spad_addr, GEMMINI_DIM, GEMMINI_DIM)
#define gemmini_mvin3(dram_addr, spad_addr) gemmini_extended_mvin3(dram_addr, spad_addr, GEMMINI_DIM, GEMMINI_DIM)

/* mvout: rows x cols from local rows to DRAM (row r at dram + r * config_st stride bytes);
   scratchpad: int8 as is; accumulator: int32 as is (bit 29) or ACC_SCALE by the config_st scale,
   saturate to int8, then relu if configured.  Wide stores take DIM-column blocks DIM rows apart. */
static inline void gemmini_model_mvout(uint64_t dram, uint32_t local, uint64_t cols, uint64_t rows) {
    if (!gemmini_model_live())
        return;
    if (local == GEMMINI_GARBAGE_ADDR) {
        gemmini_model_fail("mvout: source is the GARBAGE address");
        return;
    }
    if (dram == 0 && rows && cols) {
        gemmini_model_fail("mvout: DRAM address 0");
        return;
    }
    int acc = (local & GEMMINI_ACC_BIT) != 0, full = acc && (local & GEMMINI_FULL_BIT) != 0;
    uint64_t row0 = local & GEMMINI_ROW_MASK;
    uint64_t elem = full ? 4 : 1;
    uint64_t max_cols = (GEMMINI_T_DMA_MAXBYTES / (GEMMINI_DIM * elem)) * GEMMINI_DIM;
    if (rows > GEMMINI_DIM || cols > max_cols) {
        gemmini_model_fail("mvout: %llu rows x %llu cols exceeds %d rows x %llu cols", (unsigned long long)rows,
                           (unsigned long long)cols, GEMMINI_DIM, (unsigned long long)max_cols);
        return;
    }
    uint64_t blocks = gemmini_ceil_div(cols, GEMMINI_DIM);
    if (rows && cols && !gemmini_check_rows("mvout", acc, row0, row0 + rows - 1 + (blocks - 1) * GEMMINI_DIM))
        return;
    for (uint64_t r = 0; r < rows; r++) {
        for (uint64_t j = 0; j < cols; j++) {
            uint64_t row = row0 + r + (j / GEMMINI_DIM) * GEMMINI_DIM, col = j % GEMMINI_DIM;
            void *dst = (void *)(uintptr_t)(dram + r * gemmini_model.st_stride + j * elem);
            if (full) {
                memcpy(dst, &gemmini_model.acc[row][col], 4);
            } else if (acc) {
                float y = gemmini_acc_scale(gemmini_model.acc[row][col], gemmini_model.st_scale);
                int8_t b = (int8_t)(y > 127.0f ? 127 : (y < -128.0f ? -128 : (int)y));
                if (gemmini_model.st_act == 1 && b < 0)
                    b = 0;
                memcpy(dst, &b, 1);
            } else {
                memcpy(dst, &gemmini_model.sp[row][col], 1);
            }
        }
    }
    /* timing: DMA_LATENCY + rows * ceil(cols * elem / BUS_BYTES) */
    gemmini_model.counters[GEMMINI_C_MVOUTS] += 1;
    gemmini_model.counters[GEMMINI_C_DMA_BYTES_OUT] += (long long)(rows * cols * elem);
    long long beats = (long long)(rows * gemmini_ceil_div(cols * elem, GEMMINI_T_BUS_BYTES));
    gemmini_add_cycles(GEMMINI_C_CYCLES_DMA, GEMMINI_T_DMA_LATENCY + beats);
    gemmini_span src = {local, rows, 1, blocks, GEMMINI_DIM};
    gemmini_timed(GEMMINI_Q_ST, beats, beats, beats + GEMMINI_T_DMA_LATENCY, 0, &src, 1, NULL, 0);
}
#define gemmini_extended_mvout(dram_addr, spad_addr, cols, rows)                                                    \
    gemmini_model_mvout((uint64_t)(uintptr_t)(dram_addr), (uint32_t)(uint64_t)(spad_addr), (uint64_t)(cols),        \
                        (uint64_t)(rows))
#define gemmini_mvout(dram_addr, spad_addr) gemmini_extended_mvout(dram_addr, spad_addr, GEMMINI_DIM, GEMMINI_DIM)

/* ------------------------------------------------------------------------------------------ */
/* execution                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* operand element (i, k) of a scratchpad matrix of rows x cols at `addr` (rows `stride` apart);
   zero outside it and for GARBAGE */
static inline int32_t gemmini_operand(uint32_t addr, uint32_t rows, uint32_t cols, uint32_t stride, uint32_t i,
                                      uint32_t k) {
    if (addr == GEMMINI_GARBAGE_ADDR || i >= rows || k >= cols)
        return 0;
    return gemmini_model.sp[(addr & GEMMINI_ROW_MASK) + stride * i][k];
}

/* write one result row element to C: accumulator int32 (overwrite or add), or scratchpad int8
   (OS: rounding shift by sys_shift; then relu if config_ex asked; saturate) */
static inline void gemmini_write_result(uint32_t c, uint32_t i, uint32_t j, int32_t v) {
    uint32_t row = (c & GEMMINI_ROW_MASK) + i;
    if (c & GEMMINI_ACC_BIT) {
        int32_t *dst = &gemmini_model.acc[row][j];
        *dst = (c & GEMMINI_ACCUMULATE_BIT) ? (int32_t)((uint32_t)*dst + (uint32_t)v) : v;
    } else {
        int32_t s = gemmini_model.dataflow == OS ? gemmini_shift_round(v, gemmini_model.sys_shift) : v;
        if (gemmini_model.ex_act == 1 && s < 0)
            s = 0;
        gemmini_model.sp[row][j] = gemmini_saturate_i8(s);
    }
}

/* OS: move the partial sums out of the mesh into the C of the preload that started them */
static inline void gemmini_model_drain(void) {
    if (!gemmini_model.os_pending)
        return;
    gemmini_model.os_pending = 0;
    if (gemmini_model.out_addr == GEMMINI_GARBAGE_ADDR)
        return;
    for (uint32_t i = 0; i < gemmini_model.out_rows; i++)
        for (uint32_t j = 0; j < gemmini_model.out_cols; j++)
            gemmini_write_result(gemmini_model.out_addr, i, j, gemmini_model.pe[i][j]);
}

static inline int gemmini_check_output(const char *what, uint32_t c, uint32_t rows) {
    if (c == GEMMINI_GARBAGE_ADDR || rows == 0)
        return 1;
    uint64_t row = c & GEMMINI_ROW_MASK;
    return gemmini_check_rows(what, (c & GEMMINI_ACC_BIT) != 0, row, row + rows - 1);
}

/* preload(BD, C): WS: B (weights, installed by the next compute_preloaded); OS: D (initial
   partial sums).  Sets the output C for the following computes. */
static inline void gemmini_model_preload(uint32_t bd, uint32_t c, uint64_t bd_cols, uint64_t bd_rows, uint64_t c_cols,
                                         uint64_t c_rows) {
    if (!gemmini_model_live())
        return;
    /* BD_cols x BD_rows is B as multiplied; a transposed B is stored BD_cols rows of BD_rows */
    uint64_t stored_rows = gemmini_model.b_transpose && gemmini_model.dataflow == WS ? bd_cols : bd_rows;
    if (!gemmini_check_dims("preload (B/D)", bd_cols, bd_rows) || !gemmini_check_dims("preload (C)", c_cols, c_rows) ||
        !gemmini_check_operand("preload (B/D)", bd, (uint32_t)stored_rows, 1) ||
        !gemmini_check_output("preload (C)", c, (uint32_t)c_rows))
        return;
    gemmini_model_drain(); /* OS: the previous results leave as the new D enters */
    gemmini_model.pre_addr = bd;
    gemmini_model.pre_cols = (uint32_t)bd_cols;
    gemmini_model.pre_rows = (uint32_t)bd_rows;
    gemmini_model.out_addr = c;
    gemmini_model.out_cols = (uint32_t)c_cols;
    gemmini_model.out_rows = (uint32_t)c_rows;
    /* timing: PRELOAD + BD_rows */
    gemmini_model.counters[GEMMINI_C_PRELOADS] += 1;
    gemmini_add_cycles(GEMMINI_C_CYCLES_EXEC, GEMMINI_T_PRELOAD + (long long)bd_rows);
    gemmini_span src = gemmini_rows(bd, stored_rows);
    gemmini_timed(GEMMINI_Q_EX, GEMMINI_T_PRELOAD, GEMMINI_T_PRELOAD + (long long)bd_rows,
                  GEMMINI_T_PRELOAD + (long long)bd_rows, 0, &src, 1, NULL, 0);
}
#define gemmini_extended_preload(BD, C, BD_cols, BD_rows, C_cols, C_rows)                                           \
    gemmini_model_preload((uint32_t)(uint64_t)(BD), (uint32_t)(uint64_t)(C), (uint64_t)(BD_cols),                   \
                          (uint64_t)(BD_rows), (uint64_t)(C_cols), (uint64_t)(C_rows))
#define gemmini_preload(BD, C) gemmini_extended_preload(BD, C, GEMMINI_DIM, GEMMINI_DIM, GEMMINI_DIM, GEMMINI_DIM)
#define gemmini_preload_zeros(C) gemmini_preload(GEMMINI_GARBAGE_ADDR, C)

/* compute(A, BD): WS: C = A * W + D (D = the BD operand), written to C now; compute_preloaded
   first installs the preloaded B as W, compute_accumulated keeps W.  OS: the mesh sums
   (reset to the preloaded D by compute_preloaded) += A * B (B = the BD operand), written to C
   when drained. */
static inline void gemmini_model_compute(uint32_t a, uint32_t bd, uint64_t a_cols, uint64_t a_rows, uint64_t bd_cols,
                                         uint64_t bd_rows, int preloaded) {
    if (!gemmini_model_live())
        return;
    gemmini_model_state *m = &gemmini_model;
    const char *what = preloaded ? "compute_preloaded" : "compute_accumulated";
    /* A_cols x A_rows is A as multiplied; a transposed A is stored A_cols rows of A_rows */
    int a_transposed = m->a_transpose && m->dataflow == WS;
    uint32_t a_stored_rows = (uint32_t)(a_transposed ? a_cols : a_rows);
    if (!gemmini_check_dims(what, a_cols, a_rows) || !gemmini_check_dims(what, bd_cols, bd_rows) ||
        !gemmini_check_operand(what, a, a_stored_rows, m->a_stride) ||
        !gemmini_check_operand(what, bd, (uint32_t)bd_rows, 1))
        return;
    /* operands, zero outside their rows x cols and for GARBAGE */
    int32_t A[GEMMINI_DIM][GEMMINI_DIM], BD[GEMMINI_DIM][GEMMINI_DIM];
    for (uint32_t i = 0; i < GEMMINI_DIM; i++) {
        for (uint32_t k = 0; k < GEMMINI_DIM; k++) {
            A[i][k] = a_transposed ? gemmini_operand(a, a_stored_rows, (uint32_t)a_rows, m->a_stride, k, i)
                                   : gemmini_operand(a, (uint32_t)a_rows, (uint32_t)a_cols, m->a_stride, i, k);
            BD[i][k] = gemmini_operand(bd, (uint32_t)bd_rows, (uint32_t)bd_cols, 1, i, k);
        }
    }
    int transposed = m->b_transpose && m->dataflow == WS;
    if (preloaded) /* WS: the weights B (stored transposed: W[k][j] = B[j][k]); OS: the initial sums D */
        for (uint32_t i = 0; i < GEMMINI_DIM; i++)
            for (uint32_t j = 0; j < GEMMINI_DIM; j++)
                m->pe[i][j] = transposed ? gemmini_operand(m->pre_addr, m->pre_cols, m->pre_rows, 1, j, i)
                                         : gemmini_operand(m->pre_addr, m->pre_rows, m->pre_cols, 1, i, j);
    uint64_t b_cols;
    if (m->dataflow == WS) {
        if (preloaded)
            m->w_cols = m->pre_addr == GEMMINI_GARBAGE_ADDR ? 0 : m->pre_cols;
        b_cols = m->w_cols;
        if (m->out_addr != GEMMINI_GARBAGE_ADDR) {
            for (uint32_t i = 0; i < m->out_rows; i++) {
                for (uint32_t j = 0; j < m->out_cols; j++) {
                    uint32_t sum = (uint32_t)BD[i][j]; /* int32 sums wrap */
                    for (uint32_t k = 0; k < GEMMINI_DIM; k++)
                        sum += (uint32_t)(A[i][k] * m->pe[k][j]);
                    gemmini_write_result(m->out_addr, i, j, (int32_t)sum);
                }
            }
        }
    } else {
        b_cols = bd == GEMMINI_GARBAGE_ADDR ? 0 : bd_cols;
        for (uint32_t i = 0; i < GEMMINI_DIM; i++) {
            for (uint32_t j = 0; j < GEMMINI_DIM; j++) {
                uint32_t sum = (uint32_t)m->pe[i][j];
                for (uint32_t k = 0; k < GEMMINI_DIM; k++)
                    sum += (uint32_t)(A[i][k] * BD[k][j]);
                m->pe[i][j] = (int32_t)sum;
            }
        }
        m->os_pending = 1;
    }
    /* timing: COMPUTE + A_rows; macs: A_rows * A_cols * B_cols */
    if (a != GEMMINI_GARBAGE_ADDR)
        m->counters[GEMMINI_C_MACS] += (long long)(a_rows * a_cols * b_cols);
    m->counters[GEMMINI_C_COMPUTES] += 1;
    gemmini_add_cycles(GEMMINI_C_CYCLES_EXEC, GEMMINI_T_COMPUTE + (long long)a_rows);
    long long occupancy = GEMMINI_T_COMPUTE + (long long)a_rows;
    gemmini_span reads[2] = {{a, a_stored_rows, m->a_stride, 1, 0}, gemmini_rows(bd, bd_rows)};
    gemmini_span out = gemmini_rows(m->out_addr, m->out_rows); /* OS: counted as written now */
    gemmini_timed(GEMMINI_Q_EX, occupancy, occupancy, occupancy + GEMMINI_T_MESH_LATENCY, 0, reads, 2, &out, 1);
}
#define gemmini_extended_compute_preloaded(A, BD, A_cols, A_rows, BD_cols, BD_rows)                                 \
    gemmini_model_compute((uint32_t)(uint64_t)(A), (uint32_t)(uint64_t)(BD), (uint64_t)(A_cols), (uint64_t)(A_rows), \
                          (uint64_t)(BD_cols), (uint64_t)(BD_rows), 1)
#define gemmini_extended_compute_accumulated(A, BD, A_cols, A_rows, BD_cols, BD_rows)                               \
    gemmini_model_compute((uint32_t)(uint64_t)(A), (uint32_t)(uint64_t)(BD), (uint64_t)(A_cols), (uint64_t)(A_rows), \
                          (uint64_t)(BD_cols), (uint64_t)(BD_rows), 0)
#define gemmini_compute_preloaded(A, BD)                                                                           \
    gemmini_extended_compute_preloaded(A, BD, GEMMINI_DIM, GEMMINI_DIM, GEMMINI_DIM, GEMMINI_DIM)
#define gemmini_compute_accumulated(A, BD)                                                                         \
    gemmini_extended_compute_accumulated(A, BD, GEMMINI_DIM, GEMMINI_DIM, GEMMINI_DIM, GEMMINI_DIM)

/* ------------------------------------------------------------------------------------------ */
/* synchronisation                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* fence: wait for everything (decoupled); the serial model only drains OS results and charges FENCE */
static inline void gemmini_model_fence(void) {
    if (!gemmini_model_live())
        return;
    gemmini_model_drain();
    gemmini_model.counters[GEMMINI_C_FENCES] += 1;
    gemmini_add_cycles(GEMMINI_C_CYCLES_OTHER, GEMMINI_T_FENCE);
    gemmini_timeline *c = &gemmini_model.clock; /* the host waits for everything */
    c->host = gemmini_max(c->host, c->end) + GEMMINI_T_FENCE;
}
#define gemmini_fence() gemmini_model_fence()

/* flush: a TLB flush on Gemmini; here it only drains OS results, free of charge */
static inline void gemmini_model_flush(void) {
    if (gemmini_model_live())
        gemmini_model_drain();
}
#define gemmini_flush(skip) ((void)(skip), gemmini_model_flush())

#endif /* EXO_EGRAPH_GEMMINI_H */
