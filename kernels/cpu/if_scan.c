#include "../common/mst_math.h"
#include "cpu_ops.h"

/* Rows of `channels` neurons; a block of rows keeps its membranes in L1
 * while the scan walks the steps. */
#define ROWS_PER_BLOCK(C) ((C) >= 2048 ? 1 : 2048 / (C))

static inline float affine_in(const mst_if_args *a, long t, long r, int c)
{
    float u = a->in[t * a->in_tstride + r];
    return a->scale ? u * a->scale[c] + a->shift[c] : u;
}

static void scan_rows(const mst_if_args *a, long row0, long row1)
{
    int C = a->channels;
    for (int t = 0; t < a->steps; t++)
        for (long row = row0; row < row1; row++)
            for (int c = 0; c < C; c++) {
                long r = row * C + c;
                float z = affine_in(a, t, r, c);
                a->out[(long)t * a->R + r] = mst_if_step(&a->v[r], z) * a->out_scale;
            }
}

mst_status mst_cpu_if_scan(void *ctx, const mst_if_args *a, mst_error *err)
{
    (void)ctx;
    (void)err;
    long rows = a->R / a->channels, per = ROWS_PER_BLOCK(a->channels);
#pragma omp parallel for schedule(static)
    for (long r0 = 0; r0 < rows; r0 += per) scan_rows(a, r0, r0 + per < rows ? r0 + per : rows);
    return MST_OK;
}

mst_status mst_cpu_qcfs(void *ctx, const mst_if_args *a, mst_error *err)
{
    (void)ctx;
    (void)err;
    int C = a->channels;
#pragma omp parallel for collapse(2) schedule(static)
    for (int t = 0; t < a->steps; t++)
        for (long r = 0; r < a->R; r++)
            a->out[(long)t * a->R + r] = mst_qcfs(affine_in(a, t, r, (int)(r % C))) * a->out_scale;
    return MST_OK;
}
