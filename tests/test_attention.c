/* Window attention against a naive, element-by-element version of spec
 * section 3 with the masks drawn one curand() call per element (section 4). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "helpers.h"
#include "kernels/backend.h"
#include "kernels/common/mst_math.h"

static const attn_case cases[] = {
    {1, 4, 4, 0, 8, 2, 3, 0, MST_MODE_SNN, 0.0, 0},  {2, 8, 4, 2, 12, 3, 4, 5, MST_MODE_SNN, 0.75, 0},
    {1, 14, 7, 3, 10, 2, 2, 0, MST_MODE_SNN, 0.5, 0}, {2, 6, 3, 1, 6, 1, 1, 0, MST_MODE_ANN, 0.75, 0},
    {1, 7, 7, 0, 9, 3, 5, 2, MST_MODE_SNN, 0.3, 0},  {3, 6, 2, 1, 4, 2, 2, 1, MST_MODE_ANN, 0.0, 0},
    {1, 4, 2, 1, 140, 2, 2, 0, MST_MODE_SNN, 0.5, 0}, /* d = 70: a head spans words */
    /* one or two of the three sites (--mask-sites) */
    {2, 8, 4, 2, 12, 3, 4, 5, MST_MODE_SNN, 0.75, MST_MASK_K}, {1, 7, 7, 0, 9, 3, 3, 2, MST_MODE_SNN, 0.5, MST_MASK_Q | MST_MASK_ATTN},
    {2, 6, 3, 1, 6, 1, 1, 0, MST_MODE_ANN, 0.75, MST_MASK_ATTN},
};

static float frand(unsigned *s) { return (float)rand_r(s) / (float)RAND_MAX; }

static int token(const attn_case *c, int win, int i)
{
    int per = c->res / c->w;
    int y = (win / per) * c->w + i / c->w, x = (win % per) * c->w + i % c->w;
    return ((y + c->shift) % c->res) * c->res + (x + c->shift) % c->res;
}

static int region(const attn_case *c, int win, int i)
{
    int per = c->res / c->w;
    int y = (win / per) * c->w + i / c->w, x = (win % per) * c->w + i % c->w;
    int ly = y < c->res - c->w ? 0 : (y < c->res - c->shift ? 1 : 2);
    int lx = x < c->res - c->w ? 0 : (x < c->res - c->shift ? 1 : 2);
    return 3 * ly + lx;
}

static int keep(const mst_attn_args *a, int b, int site, int t, uint64_t offset)
{
    if (a->mask_threshold[site] == 0) return 1;
    uint64_t sub = ((uint64_t)(a->first_image + b) << 32) | ((uint64_t)(a->site_q + site) << 16) | (uint64_t)t;
    return mst_philox_raw(a->seed, sub, offset) >= a->mask_threshold[site];
}

static void naive(const attn_case *c, const mst_attn_args *a, const float *qkv, float *vm, float *out)
{
    int n = c->w * c->w, d = c->dim / c->heads, N = c->res * c->res, nw = N / n, C = c->dim;
    for (int t = c->t0; t < c->t0 + c->steps; t++)
        for (int b = 0; b < c->batch; b++)
            for (int win = 0; win < nw; win++)
                for (int h = 0; h < c->heads; h++) {
                    const float *base = qkv + (long)((t - c->t0) * c->batch + b) * N * 3 * C;
                    uint64_t qk0 = ((uint64_t)win * c->heads + h) * n * d, s0 = ((uint64_t)win * c->heads + h) * n * n;
                    for (int i = 0; i < n; i++) {
                        double A[64], mx = -1e30, sum = 0;
                        for (int k = 0; k < n; k++) {
                            float acc = 0.0f;
                            for (int j = 0; j < d; j++) {
                                float q = base[token(c, win, i) * 3 * C + h * d + j] * keep(a, b, 0, t, qk0 + i * d + j);
                                float kk = base[token(c, win, k) * 3 * C + C + h * d + j] * keep(a, b, 1, t, qk0 + k * d + j);
                                acc += q * kk;
                            }
                            float z = acc * a->qk_scale, s;
                            float *v = &vm[(((long)b * nw + win) * c->heads + h) * n * n + i * n + k];
                            if (c->mode == MST_MODE_SNN) {
                                *v += z;
                                s = *v >= 1.0f;
                                *v -= s;
                            } else {
                                s = fminf(fmaxf(floorf(z * 16 + 0.5f) / 16, 0), 1);
                            }
                            A[k] = a->lam_attn * s * keep(a, b, 2, t, s0 + i * n + k) + a->rel_bias[(h * n + i) * n + k] +
                                   (c->shift && region(c, win, i) != region(c, win, k) ? -100.0 : 0.0);
                            mx = fmax(mx, A[k]);
                        }
                        for (int k = 0; k < n; k++) sum += (A[k] = exp(A[k] - mx));
                        for (int j = 0; j < d; j++) {
                            double o = 0;
                            for (int k = 0; k < n; k++) o += A[k] / sum * base[token(c, win, k) * 3 * C + 2 * C + h * d + j];
                            out[((long)((t - c->t0) * c->batch + b) * N + token(c, win, i)) * C + h * d + j] = (float)(o * a->v_scale);
                        }
                    }
                }
}

Test(window_attention, matches_naive_spec_version)
{
    mst_backend be;
    mst_backend_cpu(&be, NULL);
    unsigned seed = 11;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const attn_case *c = &cases[ci];
        int n = c->w * c->w, N = c->res * c->res, C = c->dim;
        long rows = (long)c->steps * c->batch * N, nv = (long)c->batch * N / n * c->heads * n * n;
        float *qkv = malloc(sizeof(float) * (size_t)(rows * 3 * C)), *bias = malloc(sizeof(float) * (size_t)(c->heads * n * n));
        float *o1 = calloc((size_t)(rows * C), sizeof(float)), *o2 = calloc((size_t)(rows * C), sizeof(float));
        float *v1 = malloc(sizeof(float) * (size_t)nv), *v2 = malloc(sizeof(float) * (size_t)nv);
        for (long i = 0; i < rows * 3 * C; i++)
            qkv[i] = c->mode == MST_MODE_SNN ? (float)(frand(&seed) < 0.4f) : floorf(frand(&seed) * 17) / 16;
        for (int i = 0; i < c->heads * n * n; i++) bias[i] = frand(&seed) - 0.5f;
        for (long i = 0; i < nv; i++) v1[i] = v2[i] = MST_IF_V0;
        uint64_t *bits = pack_spikes(qkv, rows, 3 * C);
        mst_attn_args a = {.qkv = c->mode == MST_MODE_ANN ? qkv : NULL, .qkv_bits = c->mode == MST_MODE_SNN ? bits : NULL, .out = o1, .v_attn = v1, .rel_bias = bias, .steps = c->steps, .t0 = c->t0,
                           .batch = c->batch, .res = c->res, .dim = C, .heads = c->heads, .window = c->w,
                           .shift = c->shift, .qk_scale = 0.45f, .lam_attn = 1.3f, .v_scale = 0.8f, .mode = c->mode,
                           .seed = 99, .first_image = 7, .site_q = 3};
        attn_case_thresholds(c, a.mask_threshold);
        cr_assert_eq(be.window_attention(be.ctx, &a, NULL), MST_OK);
        naive(c, &a, qkv, v2, o2);
        for (long i = 0; i < rows * C; i++)
            cr_expect(fabsf(o1[i] - o2[i]) <= 2e-6f * (1.0f + fabsf(o2[i])), "case %zu out %ld: %g vs %g", ci, i, o1[i], o2[i]);
        for (long i = 0; c->mode == MST_MODE_SNN && i < nv; i++) cr_expect_eq(v1[i], v2[i], "case %zu membrane %ld", ci, i);
        free(bits), free(qkv), free(bias), free(o1), free(o2), free(v1), free(v2);
    }
    be.destroy(&be);
}

/* The softmax's exp (mst_expf, shared by both backends): the x87 expl
 * rounded to float (correctly rounded e^x but for double-rounding accidents
 * near a midpoint, about 2^-40 likely) at every 4099th float in [-110, 100],
 * subnormal, overflowing and 0 results included; and the IEEE edge cases.
 * (Over every 7th float of that range, 3.2e8 of them, mst_expf never differed
 * from glibc's double exp rounded to float; glibc's own expf did 24466 times.) */
Test(window_attention, exp_is_correctly_rounded_from_basic_operations)
{
    long tried = 0, inexact = 0;
    for (uint32_t bits = 0; bits < 0xFFFFFFFFu - 4099u; bits += 4099u) {
        float x, got;
        memcpy(&x, &bits, sizeof x);
        if (!(x >= -110.0f && x <= 100.0f)) continue;
        got = mst_expf(x);
        float want = (float)expl((long double)x);
        tried++;
        if (got == want) continue;
        inexact++;
        cr_expect(fabsf(got - want) <= fabsf(nextafterf(want, INFINITY) - want), "exp(%a) = %a, want %a", (double)x,
                  (double)got, (double)want);
    }
    cr_expect_gt(tried, 500000);
    cr_expect_eq(inexact, 0, "%ld of %ld results are not correctly rounded", inexact, tried);
    cr_expect_eq(mst_expf(0.0f), 1.0f);
    cr_expect_eq(mst_expf(-0.0f), 1.0f);
    cr_expect(isinf(mst_expf(89.0f)) && isinf(mst_expf(INFINITY)));
    cr_expect_eq(mst_expf(-104.0f), 0.0f);
    cr_expect_eq(mst_expf(-INFINITY), 0.0f);
    cr_expect(isnan(mst_expf(NAN)));
    cr_expect(isfinite(mst_expf(88.72283f)) && isinf(mst_expf(88.7229f)), "float overflows at ln(FLT_MAX) = 88.722839");
    cr_expect(mst_expf(-100.0f) > 0.0f && mst_expf(-100.0f) < 1.2e-38f, "e^-100 is subnormal, not 0");
}
