#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/error.h"
#include "cpu_ops.h"

/* Every sgemm call has the same shape (GEMM_ROWS x N x K): OpenBLAS picks its
 * kernels (small-matrix paths, tails) from the shape, so a row's result would
 * otherwise depend on how many rows share the call, i.e. on the batch size
 * and time chunk. With one fixed shape a row's logits are bit-identical for
 * any batch or chunk (tests/test_engine.c). A multiple of 32 rows leaves no
 * row tail inside OpenBLAS's micro-kernels. */
#define GEMM_ROWS 256

static void tile(const float *x, int rows, int K, const float *w, int N, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, N, K, 1.0f, x, K, w, K, 1.0f, y, N);
}

/* The last, partial tile runs padded with zero rows. */
static mst_status padded_tile(const float *x, long rows, int K, const float *w, int N, float *y, mst_error *err)
{
    float *px = calloc((size_t)GEMM_ROWS * K, sizeof(float)), *py = calloc((size_t)GEMM_ROWS * N, sizeof(float));
    if (!px || !py) {
        free(px);
        free(py);
        return mst_fail(err, MST_ERR_NOMEM, "out of memory in linear (%d x %d)", GEMM_ROWS, K + N);
    }
    memcpy(px, x, sizeof(float) * (size_t)(rows * K));
    memcpy(py, y, sizeof(float) * (size_t)(rows * N));
    tile(px, GEMM_ROWS, K, w, N, py);
    memcpy(y, py, sizeof(float) * (size_t)(rows * N));
    free(px);
    free(py);
    return MST_OK;
}

mst_status mst_cpu_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N,
                          float *y, mst_error *err)
{
    (void)ctx;
    long full = M / GEMM_ROWS;
#pragma omp parallel for schedule(static)
    for (long m = 0; m < M; m++)
        for (int n = 0; n < N; n++) y[m * N + n] = b ? b[n] : 0.0f;
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < full; t++) tile(x + t * GEMM_ROWS * K, GEMM_ROWS, K, w, N, y + t * GEMM_ROWS * N);
    long done = full * GEMM_ROWS;
    return M > done ? padded_tile(x + done * K, M - done, K, w, N, y + done * N, err) : MST_OK;
}
