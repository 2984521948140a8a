/* Window attention, one (image, window, head) at a time over all steps of the
 * chunk: the IF_attn membranes of that unit stay hot while the steps run. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "../../host/error.h"
#include "../common/mst_math.h"
#include "../common/mst_window.h"
#include "cpu_ops.h"

typedef struct {
    float *q, *k, *v, *S;   /* [n][d], [n][d], [n][d], [n][n] */
    uint8_t *keep;          /* [n][n] (also used for q and k: n*d <= its size) */
    int n, d;
} scratch;

/* keep[i] for the `count` elements from `offset` of one mask subsequence. */
static void draw_keep(const mst_attn_args *a, uint32_t site, uint64_t image, int t, uint64_t offset,
                      long count, uint8_t *keep)
{
    uint64_t sub = mst_mask_subsequence(image, site, (uint32_t)t);
    mst_u32x4 blk = {{0, 0, 0, 0}};
    for (long i = 0; i < count; i++) {
        uint64_t o = offset + (uint64_t)i;
        if (i == 0 || (o & 3) == 0) blk = mst_philox_block(a->seed, sub, o >> 2);
        keep[i] = (uint8_t)mst_mask_keep(blk.v[o & 3], a->mask_threshold);
    }
}

/* q or k of one window and head, masked (spec section 4: [window][head][token][j]). */
static void gather(const mst_attn_args *a, int part, int b, int win, int h, int t, scratch *s, float *dst)
{
    int n = s->n, d = s->d, N = a->res * a->res, C = a->dim;
    long row0 = ((long)(t - a->t0) * a->batch + b) * N;
    int masked = part < 2 && a->mask_threshold > 0;
    if (masked)
        draw_keep(a, a->site_q + (uint32_t)part, a->first_image + (uint64_t)b, t,
                  ((uint64_t)win * a->heads + h) * (uint64_t)(n * d), (long)n * d, s->keep);
    for (int i = 0; i < n; i++) {
        const float *src = a->qkv + (row0 + mst_window_token(win, i, a->res, a->window, a->shift)) * 3 * C +
                           part * C + h * d;
        for (int j = 0; j < d; j++) dst[i * d + j] = masked && !s->keep[i * d + j] ? 0.0f : src[j];
    }
}

static void scores(const mst_attn_args *a, const scratch *s, float *vm)
{
    int n = s->n, d = s->d;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int c = 0; c < d; c++) acc += s->q[i * d + c] * s->k[j * d + c];
            float z = acc * a->qk_scale;
            s->S[i * n + j] = a->mode == MST_MODE_SNN ? mst_if_step(&vm[i * n + j], z) : mst_qcfs(z);
        }
}

/* A = IF_attn(S) * Ma + B_rel + M_shift, softmax over keys, times v. */
static void softmax_v(const mst_attn_args *a, int b, int win, int h, int t, scratch *s)
{
    int n = s->n, d = s->d, N = a->res * a->res, C = a->dim;
    const float *bias = a->rel_bias + (long)h * n * n;
    if (a->mask_threshold > 0)
        draw_keep(a, a->site_q + 2, a->first_image + (uint64_t)b, t,
                  ((uint64_t)win * a->heads + h) * (uint64_t)(n * n), (long)n * n, s->keep);
    long row0 = ((long)(t - a->t0) * a->batch + b) * N;
    for (int i = 0; i < n; i++) {
        float *A = s->S + i * n, mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j < n; j++) {
            float keep = a->mask_threshold > 0 ? (float)s->keep[i * n + j] : 1.0f;
            A[j] = a->lam_attn * A[j] * keep + bias[i * n + j] +
                   mst_shift_mask(win, i, j, a->res, a->window, a->shift);
            mx = A[j] > mx ? A[j] : mx;
        }
        for (int j = 0; j < n; j++) sum += (A[j] = expf(A[j] - mx));
        float *o = a->out + (row0 + mst_window_token(win, i, a->res, a->window, a->shift)) * C + h * d;
        for (int c = 0; c < d; c++) {
            float acc = 0.0f;
            for (int j = 0; j < n; j++) acc += A[j] * s->v[j * d + c];
            o[c] = acc / sum * a->v_scale;
        }
    }
}

static void unit(const mst_attn_args *a, int b, int win, int h, scratch *s)
{
    int n = s->n, nw = (a->res / a->window) * (a->res / a->window);
    float *vm = a->v_attn + ((((long)b * nw + win) * a->heads + h) * n) * n;
    for (int t = a->t0; t < a->t0 + a->steps; t++) {
        gather(a, 0, b, win, h, t, s, s->q);
        gather(a, 1, b, win, h, t, s, s->k);
        gather(a, 2, b, win, h, t, s, s->v);
        scores(a, s, vm);
        softmax_v(a, b, win, h, t, s);
    }
}

mst_status mst_cpu_window_attention(void *ctx, const mst_attn_args *a, mst_error *err)
{
    (void)ctx;
    int n = a->window * a->window, d = a->dim / a->heads;
    int nw = (a->res / a->window) * (a->res / a->window), threads = omp_get_max_threads();
    long units = (long)a->batch * nw * a->heads;
    size_t floats = (size_t)(3 * n * d + n * n), bytes = (size_t)n * (size_t)(n > d ? n : d);
    float *fbuf = malloc(sizeof(float) * floats * (size_t)threads);
    uint8_t *kbuf = malloc(bytes * (size_t)threads);
    if (!fbuf || !kbuf) {
        free(fbuf);
        free(kbuf);
        return mst_fail(err, MST_ERR_NOMEM, "out of memory in window attention");
    }
#pragma omp parallel
    {
        int me = omp_get_thread_num();
        scratch s = {.n = n, .d = d, .q = fbuf + floats * (size_t)me, .keep = kbuf + bytes * (size_t)me};
        s.k = s.q + n * d;
        s.v = s.k + n * d;
        s.S = s.v + n * d;
#pragma omp for schedule(dynamic, 1)
        for (long u = 0; u < units; u++)
            unit(a, (int)(u / ((long)nw * a->heads)), (int)(u / a->heads % nw), (int)(u % a->heads), &s);
    }
    free(fbuf);
    free(kbuf);
    return MST_OK;
}
