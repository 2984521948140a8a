/* The fused synapse + IF op: the potentials against a double-precision loop,
 * the spikes against the IF rule, and bit-exact equality whatever the
 * grouping of tokens and steps into calls. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "kernels/backend.h"
#include "kernels/common/mst_bits.h"

typedef struct {
    long R;
    int K, N, steps;
    float density;
} sshape;

static const sshape shapes[] = {
    {1, 1, 1, 1, 0.5f},    {3, 5, 7, 2, 0.3f},     {17, 96, 288, 3, 0.2f}, {70, 16, 48, 2, 0.25f},
    {257, 36, 12, 1, 0.4f}, {40, 384, 96, 2, 0.2f}, {9, 64, 65, 3, 1.0f},   {33, 70, 17, 2, 0.0f},
    {30, 200, 130, 2, 0.3f},
};

static float frand(unsigned *s) { return (float)rand_r(s) / (float)RAND_MAX - 0.5f; }

static mst_synapse_args args(const uint64_t *x, int steps, long R, int K, const float *w, const float *b, int N, float *v,
                             uint64_t *bits, float *out, float out_scale, uint64_t *count)
{
    return (mst_synapse_args){.x = x, .steps = steps, .R = R, .K = K, .N = N, .w = w, .b = b, .v = v, .bits = bits,
                              .out = out, .out_scale = out_scale, .count = count};
}

typedef struct {
    float *x, *w, *b;
    uint64_t *xb;
} inputs;

static inputs make(const sshape *sh, unsigned seed)
{
    inputs in;
    long xs = sh->steps * sh->R * sh->K;
    in.x = malloc(sizeof(float) * (size_t)xs);
    in.w = malloc(sizeof(float) * (size_t)sh->K * sh->N);
    in.b = malloc(sizeof(float) * (size_t)sh->N);
    for (long i = 0; i < xs; i++) in.x[i] = (float)(frand(&seed) + 0.5f < sh->density);
    for (long i = 0; i < (long)sh->K * sh->N; i++) in.w[i] = 2.0f * frand(&seed);
    for (int i = 0; i < sh->N; i++) in.b[i] = frand(&seed) + 0.3f;
    in.xb = pack_spikes(in.x, sh->steps * sh->R, sh->K);
    return in;
}

/* One step from v = 0: the membrane keeps z - spike, so z = v + spike. */
Test(synapse_if, potentials_match_naive_and_spikes_follow_the_if_rule)
{
    mst_backend be;
    cr_assert_eq(mst_backend_cpu(&be, NULL), MST_OK);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        sshape sh = shapes[i];
        sh.steps = 1;
        inputs in = make(&sh, 7u + (unsigned)i);
        int WN = mst_spike_words(sh.N);
        float *v = calloc((size_t)(sh.R * sh.N), sizeof(float));
        uint64_t *bits = calloc((size_t)(sh.R * WN), sizeof(uint64_t));
        uint64_t fired = 0, want_fired = 0;
        mst_synapse_args a = args(in.xb, 1, sh.R, sh.K, in.w, in.b, sh.N, v, bits, NULL, 1.0f, &fired);
        cr_assert_eq(be.synapse_if(be.ctx, &a, NULL), MST_OK);
        for (long q = 0; q < sh.R * WN; q++) want_fired += (uint64_t)__builtin_popcountll(bits[q]);
        cr_expect_eq(fired, want_fired, "shape %zu: counted %llu spikes, packed %llu", i, (unsigned long long)fired,
                     (unsigned long long)want_fired);
        for (long r = 0; r < sh.R; r++)
            for (int n = 0; n < sh.N; n++) {
                double z = in.b[n];
                for (int k = 0; k < sh.K; k++) z += (double)in.x[r * sh.K + k] * in.w[(long)k * sh.N + n];
                int s = mst_bit(bits + r * WN, n);
                float got = v[r * sh.N + n] + (float)s;
                cr_expect(fabs(got - z) <= 1e-5 * (1.0 + sqrt((double)sh.K)), "shape %zu (%ld,%d): z %g, want %g", i, r,
                          n, got, z);
                cr_expect_eq(s, got >= 1.0f, "shape %zu (%ld,%d): spike %d for z %g", i, r, n, s, got);
            }
        free(in.x), free(in.w), free(in.b), free(in.xb), free(v), free(bits);
    }
    be.destroy(&be);
}

/* All steps and tokens in one call == step by step, token by token; and the
 * float output is the packed output times out_scale. */
Test(synapse_if, grouping_of_tokens_and_steps_does_not_matter)
{
    mst_backend be;
    cr_assert_eq(mst_backend_cpu(&be, NULL), MST_OK);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const sshape *sh = &shapes[i];
        inputs in = make(sh, 100u + (unsigned)i);
        long R = sh->R, vn = R * sh->N;
        int WK = mst_spike_words(sh->K), WN = mst_spike_words(sh->N);
        float *v1 = malloc(sizeof(float) * (size_t)vn), *v2 = malloc(sizeof(float) * (size_t)vn);
        float *v3 = malloc(sizeof(float) * (size_t)vn), *out = malloc(sizeof(float) * (size_t)(sh->steps * vn));
        uint64_t *b1 = calloc((size_t)(sh->steps * R * WN), 8), *b2 = calloc((size_t)(sh->steps * R * WN), 8);
        for (long j = 0; j < vn; j++) v1[j] = v2[j] = v3[j] = 0.5f;
        mst_synapse_args a1 = args(in.xb, sh->steps, R, sh->K, in.w, in.b, sh->N, v1, b1, NULL, 1.0f, NULL);
        mst_synapse_args a3 = args(in.xb, sh->steps, R, sh->K, in.w, in.b, sh->N, v3, NULL, out, 2.5f, NULL);
        cr_assert_eq(be.synapse_if(be.ctx, &a1, NULL), MST_OK);
        cr_assert_eq(be.synapse_if(be.ctx, &a3, NULL), MST_OK);
        for (int t = 0; t < sh->steps; t++)
            for (long r = 0; r < R; r++) {
                mst_synapse_args a2 = args(in.xb + (t * R + r) * WK, 1, 1, sh->K, in.w, in.b, sh->N, v2 + r * sh->N,
                                           b2 + (t * R + r) * WN, NULL, 1.0f, NULL);
                cr_assert_eq(be.synapse_if(be.ctx, &a2, NULL), MST_OK);
            }
        cr_expect(memcmp(b1, b2, sizeof(uint64_t) * (size_t)(sh->steps * R * WN)) == 0, "shape %zu: spikes", i);
        cr_expect(memcmp(v1, v2, sizeof(float) * (size_t)vn) == 0, "shape %zu: membranes", i);
        for (long j = 0; j < sh->steps * R; j++)
            for (int n = 0; n < sh->N; n++)
                cr_expect_eq(out[j * sh->N + n], 2.5f * (float)mst_bit(b1 + j * WN, n), "shape %zu float output", i);
        free(in.x), free(in.w), free(in.b), free(in.xb), free(v1), free(v2), free(v3), free(out), free(b1), free(b2);
    }
    be.destroy(&be);
}

/* Folded into the residual stream (proj and fc2): the same x as the float
 * output followed by the residual op, bit for bit, with and without the
 * BatchNorm that follows; and, where the fold runs the IF site that reads x
 * next (sc2, the next block's sc1), the same spikes, membranes and count as
 * if_scan run after it. */
Test(synapse_if, residual_fold_equals_output_then_residual)
{
    mst_backend be;
    cr_assert_eq(mst_backend_cpu(&be, NULL), MST_OK);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const sshape *sh = &shapes[i];
        inputs in = make(sh, 300u + (unsigned)i);
        long R = sh->R, vn = R * sh->N, xn = sh->steps * vn;
        unsigned seed = 9u + (unsigned)i;
        float *v1 = malloc(sizeof(float) * (size_t)vn), *v2 = malloc(sizeof(float) * (size_t)vn);
        float *out = malloc(sizeof(float) * (size_t)xn), *x1 = malloc(sizeof(float) * (size_t)xn);
        float *x2 = malloc(sizeof(float) * (size_t)xn), *sc = malloc(sizeof(float) * (size_t)sh->N);
        float *sf = malloc(sizeof(float) * (size_t)sh->N);
        for (long j = 0; j < vn; j++) v1[j] = v2[j] = 0.5f;
        for (long j = 0; j < xn; j++) x1[j] = x2[j] = 3.0f * frand(&seed);
        for (int n = 0; n < sh->N; n++) sc[n] = 1.0f + frand(&seed), sf[n] = frand(&seed);
        int bn = i % 2;
        uint64_t n1 = 0, n2 = 0;
        mst_synapse_args a1 = args(in.xb, sh->steps, R, sh->K, in.w, in.b, sh->N, v1, NULL, out, 0.75f, &n1);
        cr_assert_eq(be.synapse_if(be.ctx, &a1, NULL), MST_OK);
        cr_assert_eq(be.residual(be.ctx, x1, out, 1.3f, bn ? sc : NULL, bn ? sf : NULL, sh->N, xn, NULL), MST_OK);
        mst_synapse_args a2 = args(in.xb, sh->steps, R, sh->K, in.w, in.b, sh->N, v2, NULL, NULL, 0.75f, &n2);
        a2.fold = (mst_residual_fold){x2, 1.3f, bn ? sc : NULL, bn ? sf : NULL, {0}};
        int WN = mst_spike_words(sh->N), next = i % 3 != 1;
        float *w1 = malloc(sizeof(float) * (size_t)vn), *w2 = malloc(sizeof(float) * (size_t)vn);
        uint64_t *s1 = calloc((size_t)(sh->steps * R * WN), 8), *s2 = calloc((size_t)(sh->steps * R * WN), 8), m1 = 0, m2 = 0;
        for (long j = 0; j < vn; j++) w1[j] = w2[j] = 0.25f + 0.5f * (float)(j % 3);
        if (next) a2.fold.next = (mst_fold_site){w2, sf, sc, s2, &m2}; /* any affine: shift as scale and back */
        cr_assert_eq(be.synapse_if(be.ctx, &a2, NULL), MST_OK);
        if (next) {
            mst_if_args f = {.in = x1, .in_tstride = vn, .scale = sf, .shift = sc, .channels = sh->N, .v = w1,
                             .bits = s1, .count = &m1, .steps = sh->steps, .R = vn};
            cr_assert_eq(be.if_scan(be.ctx, &f, NULL), MST_OK);
            cr_expect(memcmp(s1, s2, sizeof(uint64_t) * (size_t)(sh->steps * R * WN)) == 0, "shape %zu: next spikes", i);
            cr_expect(memcmp(w1, w2, sizeof(float) * (size_t)vn) == 0, "shape %zu: next membranes", i);
            cr_expect_eq(m1, m2, "shape %zu: next counts", i);
        }
        free(w1), free(w2), free(s1), free(s2);
        cr_expect(memcmp(x1, x2, sizeof(float) * (size_t)xn) == 0, "shape %zu: residual stream", i);
        cr_expect(memcmp(v1, v2, sizeof(float) * (size_t)vn) == 0, "shape %zu: membranes", i);
        cr_expect_eq(n1, n2, "shape %zu: spike counts", i);
        free(in.x), free(in.w), free(in.b), free(in.xb), free(v1), free(v2), free(out), free(x1), free(x2), free(sc),
            free(sf);
    }
    be.destroy(&be);
}
