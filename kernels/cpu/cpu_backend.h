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
} mst_cpu;

/* Grows cpu->scratch to at least n floats (used by the calling thread only). */
mst_status mst_cpu_scratch(mst_cpu *cpu, size_t n, mst_error *err);

#endif
