/* The floors mst bench holds each CPU op kind against, measured here and now
 * with every thread: how fast this machine adds rows that sit in L1 (what an
 * event-driven synapse does per input spike at best: one load and one add per
 * output channel), and how fast it copies an array far larger than its
 * caches (STREAM's copy: what a pass over memory costs). */
#include <stdlib.h>

#include "../../host/error.h"
#include "cpu_backend.h"
#include "cpu_vec.h"

#define ADD_ROWS 32                /* 32 rows of at most 64 floats: 8 KB, in L1 */
#define ADD_COLS (MST_ACC_VECS * MST_VEC) /* the synapse's column block */
#define ADD_SWEEPS 4096            /* per timed run and thread */
#define COPY_FLOATS (16L << 20)    /* 64 MiB per array */

typedef mst_vf vf;

/* ADD_SWEEPS passes over the rows into two sets of accumulators, the
 * synapse's inner loop without its index list; returns a sum so that
 * nothing is optimised away. */
MST_CPU_CLONES static float add_sweeps(const float *w)
{
    vf a[MST_ACC_VECS] = {{0}}, c[MST_ACC_VECS] = {{0}};
    for (int s = 0; s < ADD_SWEEPS; s++)
        for (int r = 0; r < ADD_ROWS; r += 2)
#pragma GCC unroll 4
            for (int v = 0; v < MST_ACC_VECS; v++) {
                a[v] += *(const vf *)(w + r * ADD_COLS + v * MST_VEC);
                c[v] += *(const vf *)(w + (r + 1) * ADD_COLS + v * MST_VEC);
            }
    float sum = 0.0f;
    for (int v = 0; v < MST_ACC_VECS; v++)
        for (int l = 0; l < MST_VEC; l++) sum += a[v][l] + c[v][l];
    return sum;
}

/* Floats added per second, all threads at once, best of five runs. */
static double add_rate(void)
{
    float w[ADD_ROWS * ADD_COLS] __attribute__((aligned(64)));
    for (int i = 0; i < ADD_ROWS * ADD_COLS; i++) w[i] = (float)(i % 7) * 0.125f;
    double best = 0;
    int threads = omp_get_max_threads();
    for (int rep = 0; rep < 5; rep++) {
        double t0 = omp_get_wtime();
        float sum = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sum)
        sum += add_sweeps(w);
        double rate = (double)threads * ADD_SWEEPS * ADD_ROWS * ADD_COLS / (omp_get_wtime() - t0);
        if (sum == sum) best = rate > best ? rate : best; /* uses the sum: the adds are not optimised away */
    }
    return best;
}

/* Bytes per second of b = a (read + written, STREAM's count), every thread
 * on its own slice (first touched by that thread), best of five. */
static mst_status copy_bandwidth(double *out, mst_error *err)
{
    float *a = aligned_alloc(64, sizeof(float) * COPY_FLOATS), *b = aligned_alloc(64, sizeof(float) * COPY_FLOATS);
    if (!a || !b) {
        free(a), free(b);
        return mst_fail(err, MST_ERR_NOMEM, "out of memory measuring the copy bandwidth");
    }
#pragma omp parallel for schedule(static)
    for (long i = 0; i < COPY_FLOATS; i++) a[i] = (float)(i & 1023), b[i] = 0.0f;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (long i = 0; i < COPY_FLOATS; i++) b[i] = a[i];
        double rate = 2.0 * sizeof(float) * COPY_FLOATS / (omp_get_wtime() - t0);
        best = rate > best ? rate : best;
    }
    free(a), free(b);
    *out = best;
    return MST_OK;
}

mst_status mst_cpu_op_floors(void *ctx, double *floor, int kinds, mst_error *err)
{
    (void)ctx;
    double adds = add_rate(), bytes = 0;
    mst_status r = copy_bandwidth(&bytes, err);
    if (r != MST_OK) return r;
    double all[MST_NUM_OP_KINDS] = {[MST_OP_SYNAPSE] = adds, [MST_OP_ATTENTION] = adds, [MST_OP_IF_SCAN] = bytes,
                                    [MST_OP_LAYOUT] = bytes};
    for (int k = 0; k < kinds && k < MST_NUM_OP_KINDS; k++) floor[k] = all[k];
    return MST_OK;
}
