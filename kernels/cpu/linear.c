/* Linear layers with analog inputs, through OpenBLAS. Each row's result
 * depends on that row alone, so logits are bit-identical for any batch size
 * or time chunk. (Spike inputs go through synapse.c.) */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/error.h"
#include "cpu_backend.h"
#include "cpu_ops.h"

/* Every sgemm call has the same shape (GEMM_ROWS x N x K): OpenBLAS picks its
 * kernels (small-matrix paths, tails) from the shape, so a row's result would
 * otherwise depend on how many rows share the call. A multiple of 32 rows
 * leaves no row tail inside OpenBLAS's micro-kernels. */
#define GEMM_ROWS 256

static void tile(const float *x, int rows, int K, const float *w, int N, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, N, K, 1.0f, x, K, w, N, 1.0f, y, N);
}

static void fill_bias(float *y, long M, const float *b, int N)
{
#pragma omp parallel for schedule(static)
    for (long m = 0; m < M; m++)
        for (int n = 0; n < N; n++) y[m * N + n] = b ? b[n] : 0.0f;
}

/* Tile t of the call; the last, partial one runs zero-padded in `pad`. */
static void any_tile(long t, const float *x, long M, int K, const float *w, int N, float *y, float *pad)
{
    long m0 = t * GEMM_ROWS, rows = M - m0 < GEMM_ROWS ? M - m0 : GEMM_ROWS;
    if (rows == GEMM_ROWS) {
        tile(x + m0 * K, GEMM_ROWS, K, w, N, y + m0 * N);
        return;
    }
    float *px = pad, *py = pad + (size_t)GEMM_ROWS * K;
    memcpy(px, x + m0 * K, sizeof(float) * (size_t)(rows * K));
    memset(px + rows * K, 0, sizeof(float) * (size_t)((GEMM_ROWS - rows) * K));
    memcpy(py, y + m0 * N, sizeof(float) * (size_t)(rows * N));
    tile(px, GEMM_ROWS, K, w, N, py);
    memcpy(y + m0 * N, py, sizeof(float) * (size_t)(rows * N));
}

/* Every tile, the padded one too, is called inside the parallel region, so
 * OpenBLAS (OpenMP build) runs each call single-threaded: one code path. */
mst_status mst_cpu_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N,
                          float *y, mst_error *err)
{
    mst_cpu *cpu = ctx;
    long tiles = (M + GEMM_ROWS - 1) / GEMM_ROWS;
    mst_status r = mst_cpu_scratch(cpu, (size_t)GEMM_ROWS * (size_t)(K + N), err);
    if (r != MST_OK) return r;
    fill_bias(y, M, b, N);
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < tiles; t++) any_tile(t, x, M, K, w, N, y, cpu->scratch);
    return MST_OK;
}
