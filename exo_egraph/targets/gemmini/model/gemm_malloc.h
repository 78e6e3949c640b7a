/* gemm_malloc.h -- scratchpad allocator of the exo-egraph Gemmini model.
 * Exo's GEMM_SCRATCH memory emits `gemm_malloc(bytes)` / `gemm_free(addr)`; both are defined, with
 * the rest of the model, in include/gemmini.h: gemm_malloc returns the first scratchpad row of
 * ceil(bytes / 16) free rows, and running out fails the model with "scratchpad overflow". */
#ifndef EXO_EGRAPH_GEMM_MALLOC_H
#define EXO_EGRAPH_GEMM_MALLOC_H
#include "include/gemmini.h"
#endif
