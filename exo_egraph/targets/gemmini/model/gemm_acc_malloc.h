/* gemm_acc_malloc.h -- accumulator allocator of the exo-egraph Gemmini model.
 * Exo's GEMM_ACCUM memory emits `gemm_acc_malloc(bytes)` / `gemm_acc_free(addr)`; both are defined,
 * with the rest of the model, in include/gemmini.h: gemm_acc_malloc returns the first row of
 * ceil(bytes / 64) free accumulator rows with bit 31 set, and running out fails the model with
 * "accumulator overflow". */
#ifndef EXO_EGRAPH_GEMM_ACC_MALLOC_H
#define EXO_EGRAPH_GEMM_ACC_MALLOC_H
#include "include/gemmini.h"
#endif
