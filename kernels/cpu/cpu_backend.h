/* The CPU backend's context: scratch memory reused across calls. */
#ifndef MST_CPU_BACKEND_H
#define MST_CPU_BACKEND_H

#include <omp.h>
#include <stddef.h>

#include "../alloc_log.h"
#include "mst/mst.h"

typedef struct {
    float *scratch;
    size_t scratch_n;
    mst_alloc_log mem;
    double started[MST_NUM_FAMILIES], ms[MST_NUM_FAMILIES]; /* op timers */
    mst_op_work work[MST_NUM_OP_KINDS]; /* since the last op_work call */
} mst_cpu;

/* An op of `kind` that started at t0 (omp_get_wtime) did `units` of work. */
static inline void mst_cpu_tally(mst_cpu *cpu, mst_op_kind kind, double units, double t0)
{
    cpu->work[kind].units += units;
    cpu->work[kind].seconds += omp_get_wtime() - t0;
}

mst_status mst_cpu_op_floors(void *ctx, double *floor, int kinds, mst_error *err);

/* Grows cpu->scratch to at least n floats (used by the calling thread only). */
mst_status mst_cpu_scratch(mst_cpu *cpu, size_t n, mst_error *err);

#endif
