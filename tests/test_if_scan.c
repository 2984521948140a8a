/* The IF scan and QCFS sites against the spec's per-neuron loop. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "helpers.h"
#include "kernels/backend.h"
#include "kernels/common/mst_math.h"

typedef struct {
    long rows;
    int C, steps, constant_input, affine;
    float out_scale;
} shape;

static const shape shapes[] = {
    {1, 1, 1, 0, 0, 1.0f},   {3, 5, 7, 0, 1, 1.0f},    {17, 96, 16, 0, 0, 1.0f}, {5, 3000, 3, 1, 1, 2.5f},
    {33, 13, 32, 1, 0, 0.7f}, {64, 384, 4, 0, 1, 1.0f}, {2, 2049, 5, 0, 1, 1.0f},
};

static float frand(unsigned *s) { return (float)rand_r(s) / (float)RAND_MAX; }

/* Spec section 2, written out: v starts at 0.5, v += u/lambda, fire at 1, subtract. */
static void naive_if(const mst_if_args *a, float *v, float *out)
{
    for (long r = 0; r < a->R; r++) {
        float m = v[r];
        for (int t = 0; t < a->steps; t++) {
            int c = (int)(r % a->channels);
            float u = a->in[t * a->in_tstride + r];
            if (a->scale) u = u * a->scale[c] + a->shift[c];
            m += u;
            float s = m >= 1.0f;
            m -= s;
            out[t * a->R + r] = s * a->out_scale;
        }
        v[r] = m;
    }
}

static void fill_args(const shape *sh, unsigned *seed, mst_if_args *a, float **in, float **sc, float **shf)
{
    long R = sh->rows * sh->C;
    *in = malloc(sizeof(float) * (size_t)(R * sh->steps));
    for (long i = 0; i < R * sh->steps; i++) (*in)[i] = 1.6f * frand(seed) - 0.4f;
    *sc = malloc(sizeof(float) * (size_t)sh->C);
    *shf = malloc(sizeof(float) * (size_t)sh->C);
    for (int c = 0; c < sh->C; c++) {
        (*sc)[c] = 0.5f + frand(seed);
        (*shf)[c] = 0.3f * frand(seed) - 0.1f;
    }
    *a = (mst_if_args){.in = *in, .in_tstride = sh->constant_input ? 0 : R, .scale = sh->affine ? *sc : NULL,
                       .shift = sh->affine ? *shf : NULL, .channels = sh->C, .out_scale = sh->out_scale,
                       .steps = sh->steps, .R = R};
}

Test(if_scan, matches_the_spec_loop_and_carries_state_across_chunks)
{
    mst_backend be;
    mst_backend_cpu(&be, NULL);
    unsigned seed = 7;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *sh = &shapes[i];
        mst_if_args a;
        float *in, *sc, *shf;
        fill_args(sh, &seed, &a, &in, &sc, &shf);
        long R = a.R;
        float *v1 = malloc(sizeof(float) * (size_t)R), *v2 = malloc(sizeof(float) * (size_t)R);
        float *o1 = malloc(sizeof(float) * (size_t)(R * sh->steps)), *o2 = malloc(sizeof(float) * (size_t)(R * sh->steps));
        for (long r = 0; r < R; r++) v1[r] = v2[r] = MST_IF_V0;
        naive_if(&a, v1, o1);
        /* the backend runs the same steps as two chunks: state must carry over */
        int first = sh->steps / 2;
        mst_if_args b = a;
        b.v = v2;
        b.out = o2;
        b.steps = first;
        cr_assert_eq(be.if_scan(be.ctx, &b, NULL), MST_OK);
        b.in = a.in + first * a.in_tstride;
        b.out = o2 + first * R;
        b.steps = sh->steps - first;
        cr_assert_eq(be.if_scan(be.ctx, &b, NULL), MST_OK);
        long spikes = 0;
        for (long k = 0; k < R * sh->steps; k++) {
            cr_expect_eq(o1[k], o2[k], "shape %zu element %ld", i, k);
            spikes += o1[k] != 0.0f;
        }
        for (long r = 0; r < R; r++) cr_expect_eq(v1[r], v2[r], "shape %zu membrane %ld", i, r);
        if (R * sh->steps >= 100) cr_expect(spikes > 0 && spikes < R * sh->steps, "shape %zu: degenerate input", i);
        free(in), free(sc), free(shf), free(v1), free(v2), free(o1), free(o2);
    }
    be.destroy(&be);
}

Test(if_scan, packed_output_equals_float_output)
{
    mst_backend be;
    mst_backend_cpu(&be, NULL);
    unsigned seed = 5;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *sh = &shapes[i];
        mst_if_args a;
        float *in, *sc, *shf;
        fill_args(sh, &seed, &a, &in, &sc, &shf);
        long R = a.R, rows = R / sh->C;
        int W = (sh->C + 63) / 64;
        float *v1 = malloc(sizeof(float) * (size_t)R), *v2 = malloc(sizeof(float) * (size_t)R);
        float *o = malloc(sizeof(float) * (size_t)(R * sh->steps));
        uint64_t *bits = malloc(sizeof(uint64_t) * (size_t)(rows * W * sh->steps));
        for (long r = 0; r < R; r++) v1[r] = v2[r] = MST_IF_V0;
        a.out_scale = 1.0f;
        mst_if_args f = a, p = a;
        f.v = v1, f.out = o;
        p.v = v2, p.out = NULL, p.bits = bits;
        cr_assert_eq(be.if_scan(be.ctx, &f, NULL), MST_OK);
        cr_assert_eq(be.if_scan(be.ctx, &p, NULL), MST_OK);
        uint64_t *want = pack_spikes(o, rows * sh->steps, sh->C);
        cr_expect(memcmp(bits, want, sizeof(uint64_t) * (size_t)(rows * W * sh->steps)) == 0, "shape %zu", i);
        cr_expect(memcmp(v1, v2, sizeof(float) * (size_t)R) == 0, "shape %zu membranes", i);
        free(in), free(sc), free(shf), free(v1), free(v2), free(o), free(bits), free(want);
    }
    be.destroy(&be);
}

Test(if_scan, in_place_output)
{
    mst_backend be;
    mst_backend_cpu(&be, NULL);
    float in[6] = {0.6f, 0.2f, 0.6f, 0.9f, 0.1f, 0.5f}, v[2] = {0.5f, 0.5f};
    mst_if_args a = {.in = in, .in_tstride = 2, .channels = 2, .v = v, .out = in, .out_scale = 1.0f,
                     .steps = 3, .R = 2};
    cr_assert_eq(be.if_scan(be.ctx, &a, NULL), MST_OK);
    /* neuron 0 gets 0.6, 0.6, 0.1: 1.1 fires (0.1), 0.7, 0.8;
       neuron 1 gets 0.2, 0.9, 0.5: 0.7, 1.6 fires (0.6), 1.1 fires (0.1) */
    float want[6] = {1, 0, 0, 1, 0, 1};
    for (int i = 0; i < 6; i++) cr_expect_eq(in[i], want[i], "element %d", i);
    cr_expect(fabsf(v[0] - 0.8f) < 1e-6f && fabsf(v[1] - 0.1f) < 1e-6f, "v = %g %g", v[0], v[1]);
    be.destroy(&be);
}

Test(qcfs, matches_the_quantiser)
{
    mst_backend be;
    mst_backend_cpu(&be, NULL);
    unsigned seed = 3;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *sh = &shapes[i];
        mst_if_args a;
        float *in, *sc, *shf;
        fill_args(sh, &seed, &a, &in, &sc, &shf);
        a.steps = 1;
        float *out = malloc(sizeof(float) * (size_t)a.R);
        a.out = out;
        cr_assert_eq(be.qcfs(be.ctx, &a, NULL), MST_OK);
        for (long r = 0; r < a.R; r++) {
            int c = (int)(r % sh->C);
            float u = a.scale ? in[r] * sc[c] + shf[c] : in[r];
            float q = floorf(u * 16.0f + 0.5f) / 16.0f;
            q = q < 0 ? 0 : (q > 1 ? 1 : q);
            cr_expect_eq(out[r], q * sh->out_scale, "shape %zu neuron %ld", i, r);
        }
        free(in), free(sc), free(shf), free(out);
    }
    cr_expect_eq(mst_qcfs(-0.3f), 0.0f);
    cr_expect_eq(mst_qcfs(1.7f), 1.0f);
    cr_expect_eq(mst_qcfs(0.5f / 16.0f), 1.0f / 16.0f); /* half a level rounds up */
    be.destroy(&be);
}
