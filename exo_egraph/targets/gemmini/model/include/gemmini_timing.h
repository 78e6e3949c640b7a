/* gemmini_timing.h -- constants of the Gemmini timing models (exo-egraph).
 *
 * Every constant of the models is defined here, one `#define GEMMINI_T_<NAME> <int>` per line,
 * so that the Python cost models can parse this file (exo_egraph.targets.gemmini.config) and
 * reproduce the models' counts exactly. Keep that form: `#define`, the name, one integer literal,
 * nothing else on the line; the source of each number is the comment above it.
 *
 * This is a model, not FireSim or the RTL: it keeps Gemmini's structure (three decoupled
 * controllers, reservation stations, row hazards, a pipelined DMA) with simple per-command costs.
 *
 * ---- the DECOUPLED model: counter "cycles" (what the explorer ranks by) ----
 *
 * Three controllers run concurrently: load (mvin, config_ld), execute (preload, compute,
 * config_ex) and store (mvout, config_st). The host issues commands in program order, one per
 * GEMMINI_T_ISSUE cycles; a command enters its controller's reservation station when one of its
 * GEMMINI_T_RS_* entries is free (an entry frees when its command completes), else the host
 * waits, holding back every later command. A controller starts its commands in order, one after
 * the other's occupancy; a command also waits for hazards with the OTHER controllers over the
 * scratchpad and accumulator rows it touches (reads wait for their writers, writes for earlier
 * readers and writers; within one controller order alone keeps them correct, as in Gemmini's
 * ROB). Per command, from its start (ceil(a / b) = (a + b - 1) / b; beats = rows *
 * ceil(cols * elem_bytes / GEMMINI_T_BUS_BYTES), elem_bytes as in the serial model below):
 *
 *   command          occupancy               reads done        writes / command done
 *   mvin (DRAM)      beats                   -                 + DMA_LATENCY (pipelined DMA)
 *   mvin (addr 0)    rows * ZERO_ROW         -                 occupancy (the zero writer, no DRAM)
 *   mvout            beats                   occupancy         occupancy + DMA_LATENCY
 *   preload          PRELOAD                 PRELOAD + BD_rows (rows shift in under the compute before)
 *   compute_*        COMPUTE + A_rows        occupancy         occupancy + MESH_LATENCY
 *   config_ld/st     CONFIG                  -                 occupancy
 *   config_ex        CONFIG, after every earlier execute command is done (the mesh drains)
 *   fence            the host waits for every command, then FENCE
 *
 * "cycles" = the later of the last completion and the host's last issue.
 *
 * ---- the SERIAL model: counter "cycles_serial" (kept for comparison) ----
 *
 * Every instruction's cycles are added to one counter, with no overlap:
 *
 *   mvin, mvin2, mvin3 (also from DRAM address 0, i.e. zero fill):
 *       GEMMINI_T_DMA_LATENCY + rows * ceil(cols * elem_bytes / GEMMINI_T_BUS_BYTES)
 *       elem_bytes = 4 into the accumulator unless the load config is "shrunk", else 1
 *   mvout:
 *       GEMMINI_T_DMA_LATENCY + rows * ceil(cols * elem_bytes / GEMMINI_T_BUS_BYTES)
 *       elem_bytes = 4 for a full-width (bit 29) accumulator read, else 1
 *   preload:                        GEMMINI_T_PRELOAD + BD_rows   (rows of the preloaded B or D)
 *   compute_preloaded/accumulated:  GEMMINI_T_COMPUTE + A_rows    (one A row enters per cycle)
 *   config_ld, config_st:           GEMMINI_T_CONFIG
 *   config_ex:                      GEMMINI_T_CONFIG_EX           (drains the mesh)
 *   fence:                          GEMMINI_T_FENCE
 *   flush, gemm_malloc/free:        0
 *
 * Useful MACs per compute: A_rows * A_cols * B_cols, where B_cols is the column count of the
 * matrix A is multiplied by (weight-stationary: BD_cols of the preload that installed the
 * weights; output-stationary: the compute's BD_cols); 0 when A or that matrix is GARBAGE.
 * Utilization = macs / (GEMMINI_T_DIM * GEMMINI_T_DIM * cycles).
 */
#ifndef EXO_EGRAPH_GEMMINI_TIMING_H
#define EXO_EGRAPH_GEMMINI_TIMING_H

/* ---- geometry: Gemmini's default config (GemminiConfigs.defaultConfig, Configs.scala) ---- */

/* meshRows = meshColumns = 16, tileRows = tileColumns = 1: a 16x16 array of PEs
   (README: DIM "16 in the default config") */
#define GEMMINI_T_DIM 16

/* sp_capacity = CapacityInKilobytes(256); a scratchpad row is DIM int8 = 16 bytes: 262144 / 16 */
#define GEMMINI_T_SP_ROWS 16384

/* acc_capacity = CapacityInKilobytes(64); an accumulator row is DIM int32 = 64 bytes: 65536 / 64 */
#define GEMMINI_T_ACC_ROWS 1024

/* dma_buswidth = 128 (bits): one 16-byte beat per cycle on the system bus */
#define GEMMINI_T_BUS_BYTES 16

/* dma_maxbytes = 64: bytes of one DRAM row per mvin, so a mvin takes at most
   MAX_BLOCK_LEN = 64 / (DIM * 1) = 4 DIM-column blocks of int8, and
   MAX_BLOCK_LEN_ACC = 64 / (DIM * 4) = 1 block of int32 (gemmini.h) */
#define GEMMINI_T_DMA_MAXBYTES 64

/* ---- cycle costs ---- */

/* MODEL ASSUMPTION, not a Gemmini parameter: fixed cost of one DMA instruction (TLB lookup and
   one L2 round trip); tune against RTL or FireSim */
#define GEMMINI_T_DMA_LATENCY 32

/* issue cycle of matmul.preload; the B (WS) or D (OS) rows then shift in one per cycle
   (README, MeshWithDelays: matrices enter "one row at a time per cycle") */
#define GEMMINI_T_PRELOAD 1

/* issue cycle of matmul.compute.*; the A rows then enter one per cycle (same source) */
#define GEMMINI_T_COMPUTE 1

/* config_mvin / config_mvout only write configuration registers
   (README, ISA: "Action: stride <= rs2; scale <= rs1[63:32]") */
#define GEMMINI_T_CONFIG 1

/* config_ex may switch the dataflow, so the model drains the mesh first: DIM cycles
   (README: MeshWithDelays' counters count up to DIM before its configuration updates) */
#define GEMMINI_T_CONFIG_EX 16

/* gemmini_fence: nothing is outstanding in a serial model; one cycle to issue */
#define GEMMINI_T_FENCE 1

/* ---- decoupled model ---- */

/* reservation_station_entries_ld / _ex / _st = 8 / 16 / 4 (GemminiConfigs.defaultConfig) */
#define GEMMINI_T_RS_LD 8
#define GEMMINI_T_RS_EX 16
#define GEMMINI_T_RS_ST 4

/* MODEL ASSUMPTION: the host core sends one RoCC command per cycle (loop overhead not counted) */
#define GEMMINI_T_ISSUE 1

/* MODEL ASSUMPTION: a result row reaches the accumulator 2 * DIM cycles after its A row enters
   (DIM cycles of input skew plus DIM of output de-skew in MeshWithDelays' shift registers) */
#define GEMMINI_T_MESH_LATENCY 32

/* MODEL ASSUMPTION: a mvin from DRAM address 0 zeroes one row per cycle through the local write
   port without a DRAM request (Gemmini's load controller writes zeros for a null address) */
#define GEMMINI_T_ZERO_ROW 1

#endif /* EXO_EGRAPH_GEMMINI_TIMING_H */
