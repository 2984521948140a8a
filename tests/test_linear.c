/* The analog linear layer (OpenBLAS) against a plain triple loop, on odd and
 * even shapes; and the property the engine's invariance rests on: a row's
 * result does not depend on the other rows in the call. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"

typedef struct {
    long M;
    int K, N;
    float density;
} lshape;

static const lshape shapes[] = {
    {1, 1, 1, 0.5f},      {3, 5, 7, 0.3f},      {17, 96, 288, 0.2f}, {256, 16, 48, 0.25f}, {257, 36, 12, 0.4f},
    {600, 97, 130, 0.1f}, {40, 384, 96, 0.2f},  {9, 64, 65, 1.0f},   {33, 70, 17, 0.0f}, {300, 200, 70, 0.3f},
};

static float frand(unsigned *s) { return (float)rand_r(s) / (float)RAND_MAX - 0.5f; }

static void naive(const float *x, long M, int K, const float *w, const float *b, int N, double *y)
{
    for (long m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = b[n];
            for (int k = 0; k < K; k++) acc += (double)x[m * K + k] * w[(long)k * N + n];
            y[m * N + n] = acc;
        }
}

static void check(const lshape *sh)
{
    mst_backend be;
    cr_assert_eq(mst_backend_cpu(&be, NULL), MST_OK);
    unsigned seed = 17u + (unsigned)sh->M;
    long M = sh->M;
    int K = sh->K, N = sh->N;
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *w = malloc(sizeof(float) * (size_t)K * N);
    float *b = malloc(sizeof(float) * (size_t)N), *y = malloc(sizeof(float) * (size_t)(M * N));
    double *want = malloc(sizeof(double) * (size_t)(M * N));
    for (long i = 0; i < M * K; i++)
        x[i] = frand(&seed) + 0.5f < sh->density ? frand(&seed) : 0.0f;
    for (long i = 0; i < (long)K * N; i++) w[i] = frand(&seed);
    for (int i = 0; i < N; i++) b[i] = frand(&seed);
    mst_status r = be.linear(be.ctx, x, M, K, w, b, N, y, NULL);
    cr_assert_eq(r, MST_OK);
    naive(x, M, K, w, b, N, want);
    for (long i = 0; i < M * N; i++)
        cr_expect(fabs(y[i] - want[i]) <= 1e-5 * (1.0 + sqrt((double)K)), "M=%ld K=%d N=%d: y[%ld] = %g, want %g", M,
                  K, N, i, y[i], want[i]);
    /* the same rows, one at a time and from an offset: bit-identical */
    float *one = malloc(sizeof(float) * (size_t)N);
    for (long m = 0; m < M; m += 1 + M / 7) {
        r = be.linear(be.ctx, x + m * K, 1, K, w, b, N, one, NULL);
        cr_expect(memcmp(one, y + m * N, sizeof(float) * (size_t)N) == 0, "row %ld alone differs (M=%ld)", m, M);
    }
    free(one), free(x), free(w), free(b), free(y), free(want);
    be.destroy(&be);
}

Test(linear, matches_naive_and_is_row_independent)
{
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check(&shapes[i]);
}
