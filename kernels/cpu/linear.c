#include <cblas.h>

#include "cpu_ops.h"

/* One sgemm over all rows of a time chunk. OpenBLAS never splits the K sum
 * across threads or by M, so a row's result does not depend on how many rows
 * (batch, chunk) share the call: tests/test_engine.c checks that. */
mst_status mst_cpu_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b,
                          int N, float *y, mst_error *err)
{
    (void)ctx;
    (void)err;
    if (M <= 0) return MST_OK;
    for (long m = 0; m < M; m++)
        for (int n = 0; n < N; n++) y[m * N + n] = b ? b[n] : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)M, N, K, 1.0f, x, K, w, K, 1.0f, y, N);
    return MST_OK;
}
