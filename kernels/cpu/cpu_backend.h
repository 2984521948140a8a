/* The CPU backend's context: scratch memory reused across calls. */
#ifndef MST_CPU_BACKEND_H
#define MST_CPU_BACKEND_H

#include <omp.h>
#include <stddef.h>
#include <stdint.h>

#include "../alloc_log.h"
#include "mst/mst.h"

/* A synapse's weights in the kernel's panels (synapse.c), kept for weights
 * the engine marks fixed (mst_synapse_args.w_fixed): found by address. */
typedef struct mst_cpu_panels {
    const float *w, *b;
    int K, N;
    float *packed;
    size_t bytes;
    struct mst_cpu_panels *next;
} mst_cpu_panels;

/* The bit positions of every byte value (slots past its count are 0), and
 * its count: the synapse lists a row's active inputs eight at a time, with
 * no branch per spike (a branch per spike mispredicts at every row's end). */
typedef struct {
    uint8_t pos[256][8];
    uint8_t count[256];
} mst_byte_bits;

typedef struct {
    float *scratch;
    size_t scratch_n;
    mst_alloc_log mem;
    double started[MST_NUM_FAMILIES], ms[MST_NUM_FAMILIES]; /* op timers */
    mst_op_work work[MST_NUM_OP_KINDS]; /* since the last op_work call */
    mst_cpu_panels *panels;             /* fixed synapse weights in panels */
    mst_byte_bits byte_bits;
} mst_cpu;

/* An op of `kind` that started at t0 (omp_get_wtime) did `units` of work. */
static inline void mst_cpu_tally(mst_cpu *cpu, mst_op_kind kind, double units, double t0)
{
    cpu->work[kind].units += units;
    cpu->work[kind].seconds += omp_get_wtime() - t0;
}

mst_status mst_cpu_op_floors(void *ctx, double *floor, int kinds, mst_error *err);
/* Floats of scratch a K x N synapse call with fixed weights (the engine's)
 * needs at most on `threads` threads, and of the panels kept for them. */
size_t mst_cpu_synapse_scratch(int K, int N, int threads);
size_t mst_cpu_synapse_panels(int K, int N);

/* Grows cpu->scratch to at least n floats (used by the calling thread only). */
mst_status mst_cpu_scratch(mst_cpu *cpu, size_t n, mst_error *err);

#endif
