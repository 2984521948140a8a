#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "cpu_backend.h"
#include "cpu_fire.h"
#include "cpu_ops.h"

/* Rows of `channels` neurons; a block of rows keeps its membranes in L1
 * while the scan walks the steps. */
#define ROWS_PER_BLOCK(C) ((C) >= 2048 ? 1 : 2048 / (C))

static inline float affine_in(const mst_if_args *a, long t, long r, int c)
{
    return mst_if_affine(a->in[t * a->in_tstride + r], a->scale, a->shift, c);
}

MST_CPU_CLONES static uint64_t scan_rows(const mst_if_args *a, long row0, long row1, float *z)
{
    int C = a->channels, W = mst_spike_words(C);
    long rows = a->R / C;
    uint64_t fired = 0;
    for (int t = 0; t < a->steps; t++)
        for (long row = row0; row < row1; row++) {
            for (int c = 0; c < C; c++) z[c] = affine_in(a, t, row * C + c, c);
            long at = (long)t * rows + row;
            fired += (uint64_t)fire_row(a->v + row * C, z, C, a->bits ? a->bits + at * W : NULL,
                                                a->out ? a->out + at * C : NULL, a->out_scale);
        }
    return fired;
}

mst_status mst_cpu_if_scan(void *ctx, const mst_if_args *a, mst_error *err)
{
    mst_cpu *cpu = ctx;
    long rows = a->R / a->channels, per = ROWS_PER_BLOCK(a->channels);
    int threads = omp_get_max_threads();
    mst_status r = mst_cpu_scratch(cpu, (size_t)a->channels * (size_t)threads, err);
    if (r != MST_OK) return r;
    uint64_t fired = 0;
    double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static) reduction(+ : fired)
    for (long r0 = 0; r0 < rows; r0 += per)
        fired += scan_rows(a, r0, r0 + per < rows ? r0 + per : rows,
                           cpu->scratch + (size_t)a->channels * (size_t)omp_get_thread_num());
    /* memory traffic: each neuron-step's input and output; each membrane read and written once per call */
    double out = a->bits ? 1.0 / 8 : (a->out ? sizeof(float) : 0);
    mst_cpu_tally(cpu, MST_OP_IF_SCAN, (double)a->R * ((double)a->steps * (sizeof(float) + out) + 2 * sizeof(float)), t0);
    if (a->count) *a->count += fired;
    return MST_OK;
}

/* One row of C neurons; its own loop with the arguments in locals, so that
 * it vectorises (in and out may be the same row). */
static void qcfs_row(const float *in, const float *scale, const float *shift, int C, float out_scale, float *out)
{
    if (scale)
        for (int c = 0; c < C; c++) out[c] = mst_qcfs(in[c] * scale[c] + shift[c]) * out_scale;
    else
        for (int c = 0; c < C; c++) out[c] = mst_qcfs(in[c]) * out_scale;
}

mst_status mst_cpu_qcfs(void *ctx, const mst_if_args *a, mst_error *err)
{
    (void)ctx;
    (void)err;
    int C = a->channels;
    long rows = a->R / C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int t = 0; t < a->steps; t++)
        for (long row = 0; row < rows; row++)
            qcfs_row(a->in + t * a->in_tstride + row * C, a->scale, a->shift, C, a->out_scale,
                     a->out + (long)t * a->R + row * C);
    return MST_OK;
}
