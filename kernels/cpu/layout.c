/* Data movement and the small analog ops: patches, patch merging, residual
 * adds with BatchNorm, and the final LayerNorm + token mean. */
#include <math.h>
#include <string.h>

#include "../common/mst_math.h"
#include "cpu_backend.h"
#include "cpu_ops.h"

mst_status mst_cpu_patchify(void *ctx, const float *img, int B, int cin, int res, int P, float *out,
                            mst_error *err)
{
    (void)err;
    int H = res * P, K = cin * P * P;
    double t0 = omp_get_wtime();
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int p = 0; p < res * res; p++) {
            float *o = out + ((long)b * res * res + p) * K;
            int py = p / res, px = p % res;
            for (int c = 0; c < cin; c++)
                for (int ky = 0; ky < P; ky++)
                    memcpy(o + (c * P + ky) * P, img + (((long)b * cin + c) * H + py * P + ky) * H + px * P,
                           sizeof(float) * (size_t)P);
        }
    mst_cpu_tally(ctx, MST_OP_LAYOUT, 2.0 * sizeof(float) * B * cin * H * H, t0);
    return MST_OK;
}

mst_status mst_cpu_patch_merge(void *ctx, const float *x, long rows, int res, int C, float *out,
                               mst_error *err)
{
    (void)err;
    int h = res / 2;
    double t0 = omp_get_wtime();
    /* x0 = (even y, even x), x1 = (odd y, even x), x2 = (even y, odd x), x3 = (odd, odd) */
    static const int dy[4] = {0, 1, 0, 1}, dx[4] = {0, 0, 1, 1};
#pragma omp parallel for collapse(2) schedule(static)
    for (long r = 0; r < rows; r++)
        for (int p = 0; p < h * h; p++) {
            int i = p / h, j = p % h;
            float *o = out + (r * h * h + p) * 4 * C;
            for (int q = 0; q < 4; q++)
                memcpy(o + q * C, x + (r * res * res + (2 * i + dy[q]) * res + 2 * j + dx[q]) * C,
                       sizeof(float) * (size_t)C);
        }
    mst_cpu_tally(ctx, MST_OP_LAYOUT, 2.0 * sizeof(float) * rows * res * res * C, t0);
    return MST_OK;
}

mst_status mst_cpu_residual(void *ctx, float *x, const float *s, float lam, const float *scale,
                            const float *shift, int C, long n, mst_error *err)
{
    (void)ctx;
    (void)err;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < n / C; r++)
        for (int c = 0; c < C; c++) x[r * C + c] = mst_residual(x[r * C + c], s[r * C + c], lam, scale, shift, c);
    return MST_OK;
}

static void layernorm_add(const float *x, int C, const float *w, const float *b, float *acc)
{
    float mean = 0.0f, var = 0.0f;
    for (int c = 0; c < C; c++) mean += x[c];
    mean /= (float)C;
    for (int c = 0; c < C; c++) var += (x[c] - mean) * (x[c] - mean);
    float inv = 1.0f / sqrtf(var / (float)C + 1e-5f);
    for (int c = 0; c < C; c++) acc[c] += (x[c] - mean) * inv * w[c] + b[c];
}

mst_status mst_cpu_ln_mean(void *ctx, const float *x, long rows, int N, int C, const float *w,
                           const float *b, float *out, mst_error *err)
{
    (void)ctx;
    (void)err;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        float *o = out + r * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int t = 0; t < N; t++) layernorm_add(x + (r * N + t) * C, C, w, b, o);
        for (int c = 0; c < C; c++) o[c] /= (float)N;
    }
    return MST_OK;
}
