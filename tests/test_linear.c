/* The analog linear layer: every element is the sum its definition fixes
 * (bias, then the products in k order, each rounded, then added), bit for
 * bit, on odd and even shapes (row, column and k tails, k split across
 * passes); close to a double-precision sum; and the property the engine's
 * invariance rests on: a row's result does not depend on its position in
 * the call (every position of calls of up to 40 rows, sampled ones in
 * longer calls), the other rows or the thread count. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"

typedef struct {
    long M;
    int K, N;
    float density;
} lshape;

static const lshape shapes[] = {
    {1, 1, 1, 0.5f},       {3, 5, 7, 0.3f},      {17, 96, 288, 0.2f},  {256, 16, 48, 0.25f}, {257, 36, 12, 0.4f},
    {600, 97, 130, 0.1f},  {40, 384, 96, 0.2f},  {9, 64, 65, 1.0f},    {33, 70, 17, 0.0f},   {300, 200, 70, 0.3f},
    {97, 600, 23, 0.5f},   {13, 257, 40, 1.0f},  {200, 48, 96, 1.0f},  {7, 1536, 31, 0.7f},  {101, 9, 8, 0.6f},
};

static float frand(unsigned *s) { return (float)rand_r(s) / (float)RAND_MAX - 0.5f; }

/* The definition, one element at a time (the build does not contract a*b+c). */
static float element(const float *x, int K, const float *w, const float *b, int N, int n)
{
    float acc = b ? b[n] : 0.0f;
    for (int k = 0; k < K; k++) acc = acc + x[k] * w[(long)k * N + n];
    return acc;
}

static void call(const mst_backend *be, const float *x, long M, int K, const float *w, const float *b, int N, float *y)
{
    mst_error err = {0};
    cr_assert_eq(be->linear(be->ctx, x, M, K, w, b, N, y, &err), MST_OK, "%s", err.msg);
}

/* Row m of x placed at position p of a call of `len` rows (its neighbours
 * are the rows around it, or zeros) must come out with the same bits. */
static void expect_position_free(const mst_backend *be, const lshape *sh, const float *x, const float *w,
                                 const float *b, const float *y, long m, int p, int len)
{
    long M = sh->M;
    int K = sh->K, N = sh->N;
    float *xs = calloc((size_t)len * K, sizeof(float)), *ys = malloc(sizeof(float) * (size_t)len * N);
    for (int i = 0; i < len; i++) {
        long src = m - p + i;
        if (src >= 0 && src < M) memcpy(xs + (long)i * K, x + src * K, sizeof(float) * (size_t)K);
    }
    call(be, xs, len, K, w, b, N, ys);
    cr_expect(memcmp(ys + (long)p * N, y + m * N, sizeof(float) * (size_t)N) == 0,
              "M=%ld K=%d N=%d: row %ld at position %d of %d differs", M, K, N, m, p, len);
    free(xs), free(ys);
}

static void check(const mst_backend *be, const lshape *sh)
{
    unsigned seed = 17u + (unsigned)sh->M;
    long M = sh->M;
    int K = sh->K, N = sh->N;
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *w = malloc(sizeof(float) * (size_t)K * N);
    float *b = malloc(sizeof(float) * (size_t)N), *y = malloc(sizeof(float) * (size_t)(M * N));
    for (long i = 0; i < M * K; i++) x[i] = frand(&seed) + 0.5f < sh->density ? frand(&seed) : 0.0f;
    for (long i = 0; i < (long)K * N; i++) w[i] = frand(&seed);
    for (int i = 0; i < N; i++) b[i] = frand(&seed);
    call(be, x, M, K, w, b, N, y);
    long wrong = 0, first = -1;
    for (long m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float want = element(x + m * K, K, w, b, N, n);
            double exact = b[n];
            for (int k = 0; k < K; k++) exact += (double)x[m * K + k] * w[(long)k * N + n];
            if (memcmp(&want, &y[m * N + n], sizeof want) != 0 && wrong++ == 0) first = m * N + n;
            cr_expect(fabs(y[m * N + n] - exact) <= 1e-5 * (1.0 + sqrt((double)K)), "M=%ld K=%d N=%d: y[%ld] = %g, want %g",
                      M, K, N, m * N + n, y[m * N + n], exact);
        }
    cr_expect_eq(wrong, 0, "M=%ld K=%d N=%d: %ld elements are not the k-ordered sum (first y[%ld])", M, K, N, wrong,
                 first);
    /* sampled rows at every position of calls of a few lengths */
    static const int lens[] = {1, 5, 12, 13, 40, 97, 256};
    for (long m = 0; m < M; m += 1 + M / 5)
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
            for (int p = 0; p < lens[l]; p += lens[l] <= 40 ? 1 : 1 + lens[l] / 16)
                expect_position_free(be, sh, x, w, b, y, m, p, lens[l]);
    free(x), free(w), free(b), free(y);
}

Test(linear, every_element_is_its_k_ordered_sum_at_any_position)
{
    mst_backend be;
    cr_assert_eq(mst_backend_cpu(&be, NULL), MST_OK);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check(&be, &shapes[i]);
    be.destroy(&be);
}

Test(linear, thread_count_does_not_matter)
{
    mst_backend be;
    cr_assert_eq(mst_backend_cpu(&be, NULL), MST_OK);
    long M = 515;
    int K = 300, N = 70, saved = omp_get_max_threads();
    unsigned seed = 3;
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *w = malloc(sizeof(float) * (size_t)K * N);
    float *y1 = malloc(sizeof(float) * (size_t)(M * N)), *y3 = malloc(sizeof(float) * (size_t)(M * N));
    for (long i = 0; i < M * K; i++) x[i] = frand(&seed);
    for (long i = 0; i < (long)K * N; i++) w[i] = frand(&seed);
    omp_set_num_threads(1);
    call(&be, x, M, K, w, NULL, N, y1);
    omp_set_num_threads(3);
    call(&be, x, M, K, w, NULL, N, y3);
    omp_set_num_threads(saved);
    cr_expect(memcmp(y1, y3, sizeof(float) * (size_t)(M * N)) == 0, "1 and 3 threads differ");
    free(x), free(w), free(y1), free(y3);
    be.destroy(&be);
}

Test(linear, no_inputs_leave_the_bias)
{
    mst_backend be;
    cr_assert_eq(mst_backend_cpu(&be, NULL), MST_OK);
    float b[3] = {1.5f, -2.0f, 0.25f}, y[6], x[1] = {0};
    call(&be, x, 2, 0, NULL, b, 3, y);
    for (int i = 0; i < 6; i++) cr_expect_eq(y[i], b[i % 3]);
    call(&be, x, 2, 0, NULL, NULL, 3, y);
    for (int i = 0; i < 6; i++) cr_expect_eq(y[i], 0.0f);
    be.destroy(&be);
}
