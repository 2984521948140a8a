/* RSM at the MLP's inputs (spec section 4b) against the rule written out
 * element by element: one curand() number per (image, site, step, token *
 * channels + channel), keep iff raw >= floor(p * 2^32). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "kernels/backend.h"
#include "kernels/common/mst_bits.h"

typedef struct {
    int steps, t0, batch, tokens, channels;
    mst_mode mode;
    double ratio;
} rsm_case;

/* odd widths (a row's last word partly used), a hidden width past 256, and
 * a step offset: the mask key takes absolute steps */
static const rsm_case cases[] = {
    {1, 0, 1, 1, 1, MST_MODE_SNN, 0.75},    {3, 5, 2, 9, 63, MST_MODE_SNN, 0.75},  {2, 0, 3, 7, 64, MST_MODE_SNN, 0.5},
    {2, 9, 2, 16, 65, MST_MODE_SNN, 0.25},  {1, 0, 1, 49, 384, MST_MODE_SNN, 0.75}, {4, 2, 1, 5, 130, MST_MODE_SNN, 1.0},
    {1, 0, 2, 9, 63, MST_MODE_ANN, 0.75},   {1, 0, 1, 16, 258, MST_MODE_ANN, 0.5},
};

static int keep(const mst_mask_args *a, int t, int b, int token, int c)
{
    uint64_t sub = ((a->first_image + (uint64_t)b) << 32) | ((uint64_t)a->site << 16) | (uint64_t)t;
    return mst_philox_raw(a->seed, sub, (uint64_t)token * (uint64_t)a->channels + (uint64_t)c) >= a->threshold;
}

Test(rsm, mlp_masks_follow_the_spec_element_by_element)
{
    mst_backend be;
    cr_assert_eq(mst_backend_cpu(&be, NULL), MST_OK);
    unsigned seed = 5;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const rsm_case *c = &cases[ci];
        long rows = (long)c->steps * c->batch * c->tokens;
        int C = c->channels, W = mst_spike_words(C);
        float *x = malloc(sizeof(float) * (size_t)(rows * C)), *y = malloc(sizeof(float) * (size_t)(rows * C));
        for (long i = 0; i < rows * C; i++)
            x[i] = c->mode == MST_MODE_SNN ? (float)(rand_r(&seed) % 3 == 0) : (float)(rand_r(&seed) % 17) / 16.0f;
        memcpy(y, x, sizeof(float) * (size_t)(rows * C));
        uint64_t *bits = pack_spikes(x, rows, C), kept = 7;
        mst_mask_args a = {.bits = c->mode == MST_MODE_SNN ? bits : NULL, .levels = c->mode == MST_MODE_ANN ? y : NULL,
                           .steps = c->steps, .t0 = c->t0, .batch = c->batch, .tokens = c->tokens, .channels = C,
                           .seed = 0x1234567890abcdefull, .first_image = 11, .site = 37,
                           .threshold = mst_mask_threshold(c->ratio), .kept = &kept};
        cr_assert_eq(be.mask_spikes(be.ctx, &a, NULL), MST_OK);
        uint64_t want_kept = 7;
        long dropped = 0;
        for (long r = 0; r < rows; r++)
            for (int ch = 0; ch < C; ch++) {
                int t = c->t0 + (int)(r / (c->batch * c->tokens)), b = (int)(r / c->tokens % c->batch);
                int k = keep(&a, t, b, (int)(r % c->tokens), ch);
                float want = k ? x[r * C + ch] : 0.0f;
                dropped += x[r * C + ch] != 0.0f && !k;
                if (c->mode == MST_MODE_SNN) {
                    want_kept += want != 0.0f;
                    cr_assert_eq(mst_bit(bits + r * W, ch), want != 0.0f, "case %zu row %ld channel %d", ci, r, ch);
                } else {
                    cr_assert_eq(y[r * C + ch], want, "case %zu row %ld channel %d", ci, r, ch);
                }
            }
        if (c->mode == MST_MODE_SNN) {
            cr_expect_eq(kept, want_kept, "case %zu: kept %llu, want %llu", ci, (unsigned long long)kept,
                         (unsigned long long)want_kept);
            for (long r = 0; r < rows && C % 64; r++)
                cr_expect_eq(bits[r * W + W - 1] >> (C % 64), 0u, "case %zu: bits past the row stay clear", ci);
        }
        cr_expect(c->ratio == 0 || dropped > 0, "case %zu drops something", ci);
        free(x), free(y), free(bits);
    }
    be.destroy(&be);
}
