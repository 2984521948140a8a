/* Window attention, one (image, window, head) unit at a time over all steps
 * of the chunk: that unit's IF_attn membranes, token map and bias stay hot
 * while the steps run. In SNN mode q and k are spikes, so q.k^T is an AND +
 * popcount over bit-packed rows. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/error.h"
#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "../common/mst_window.h"
#include "cpu_backend.h"
#include "cpu_ops.h"
#include "cpu_philox.h"
#include "cpu_vec.h"

typedef mst_vf vf;

/* Rows of the weighted sum computed at once: 4 x 2 x 2 accumulators fit
 * AVX-512's 32 registers, 2 x 2 x 2 the 16 of AVX2 or SSE. */
#define WROWS (MST_VEC_REGS == 1 && MST_VEC == 16 ? 4 : 2)

/* AVX-512 with one register per vector: v's spikes (SNN, d <= 64) kept as
 * bits and the weighted sum done by masked adds (weighted_spikes). */
#if defined(__AVX512F__) && MST_VEC == 16
#define SPIKE_V 1
#else
#define SPIKE_V 0
#endif

typedef struct {
    int n, d, words, dp; /* dp: d rounded up to whole vectors (v's and o's row length, zero-padded) */
    int *tok;          /* [n] token of each window position */
    float *expb;       /* [heads][n][n] exp(B_rel + M_shift - row max) of window cwin */
    int cwin;          /* the window expb and tok hold (-1: none yet) */
    const float *eh;   /* [n][n] in expb: this unit's head */
    float gain[MST_QCFS_LEVELS + 1]; /* exp(lambda_attn * (level / L - 1/2)) */
    float *q, *k;      /* [n][d], masked */
    float *v;          /* [n][dp] */
    uint64_t *qb, *kb; /* [n][words], q and k bit-packed (SNN) */
    uint64_t *vb;      /* [n], v's spikes where weighted_spikes runs (SNN, d <= 64) */
    float *S, *o;      /* [n][n], [WROWS][dp] */
    float *rowsum;     /* [n] */
    int *fired, *kept; /* [n] IF_attn spikes of each key, and those the mask kept (SNN) */
    uint32_t *raw;     /* whole Philox blocks of one mask site's numbers */
    const uint32_t *rnd; /* in raw: the attn site's first number of this unit and step */
    uint64_t count[MST_ATTN_NCOUNTS]; /* this thread's spike counts */
} scratch;

/* Whether v is kept as bits (vb) for weighted_spikes, not as floats: the
 * one decision gather_v and weighted both follow. */
MST_INLINE int v_as_bits(const mst_attn_args *a, int d) { return SPIKE_V && a->mode == MST_MODE_SNN && d <= 64; }

static int padded(int d) { return (d + MST_VEC - 1) / MST_VEC * MST_VEC; }

static size_t scratch_bytes(int n, int d, int heads)
{
    size_t N = (size_t)n, D = (size_t)d, DP = (size_t)padded(d), words = (D + 63) / 64, big = N * (N > D ? N : D);
    return sizeof(int) * 3 * N + sizeof(float) * ((size_t)heads * N * N + 2 * N * D + N * DP + N * N + WROWS * DP + N) +
           sizeof(uint64_t) * (2 * words + 1) * N + sizeof(uint32_t) * (big + 8) + 64;
}

static void scratch_carve(scratch *s, void *mem, int n, int d, int heads)
{
    char *p = mem;
    s->n = n, s->d = d, s->words = (d + 63) / 64, s->dp = padded(d), s->cwin = -1;
    memset(s->count, 0, sizeof s->count);
    s->qb = (uint64_t *)p, p += sizeof(uint64_t) * (size_t)(n * s->words);
    s->kb = (uint64_t *)p, p += sizeof(uint64_t) * (size_t)(n * s->words);
    s->vb = (uint64_t *)p, p += sizeof(uint64_t) * (size_t)n;
    s->expb = (float *)p, p += sizeof(float) * (size_t)heads * (size_t)(n * n);
    s->q = (float *)p, p += sizeof(float) * (size_t)(n * d);
    s->k = (float *)p, p += sizeof(float) * (size_t)(n * d);
    s->v = (float *)p, p += sizeof(float) * (size_t)(n * s->dp);
    s->S = (float *)p, p += sizeof(float) * (size_t)(n * n);
    s->o = (float *)p, p += sizeof(float) * (size_t)(WROWS * s->dp);
    s->rowsum = (float *)p, p += sizeof(float) * (size_t)n;
    s->raw = (uint32_t *)p, p += sizeof(uint32_t) * (size_t)(n * (n > d ? n : d) + 8);
    s->tok = (int *)p, p += sizeof(int) * (size_t)n;
    s->fired = (int *)p, p += sizeof(int) * (size_t)n;
    s->kept = (int *)p;
}

/* q or k (part 0 or 1) of one window and head, masked (spec section 4: keys
 * in [window][head][token][j] order): packed bits in SNN mode, levels in ANN. */
MST_INLINE void gather_qk(const mst_attn_args *a, int part, int b, int win, int h, int t, scratch *s, float *dst,
                      uint64_t *bits)
{
    int n = s->n, d = s->d, C = a->dim, W3 = mst_spike_words(3 * C);
    long row0 = ((long)(t - a->t0) * a->batch + b) * a->res * a->res;
    uint64_t threshold = a->mask_threshold[part];
    int masked = threshold > 0;
    const uint32_t *rnd = NULL;
    if (masked)
        rnd = philox_draw(a->seed, mst_mask_subsequence(a->first_image + (uint64_t)b, a->site_q + (uint32_t)part, (uint32_t)t),
                          ((uint64_t)win * a->heads + h) * (uint64_t)(n * d), (long)n * d, s->raw);
    uint64_t all = 0, kept = 0; /* local: s->count may alias bits */
    for (int i = 0; i < n; i++) {
        const uint32_t *raw = masked ? rnd + i * d : NULL;
        for (int j0 = 0; j0 < d; j0 += 64) {
            int len = d - j0 < 64 ? d - j0 : 64;
            uint64_t keep = masked ? keep_bits(raw + j0, len, threshold) : ~UINT64_C(0);
            if (a->mode == MST_MODE_SNN) {
                const uint64_t *row = a->qkv_bits + (row0 + s->tok[i]) * W3;
                uint64_t field = mst_bit_field(row, part * C + h * d + j0, len);
                bits[i * s->words + j0 / 64] = field & keep;
                all += (uint64_t)__builtin_popcountll(field);
                kept += (uint64_t)__builtin_popcountll(field & keep);
            } else {
                const float *src = a->qkv + (row0 + s->tok[i]) * 3 * C + part * C + h * d + j0;
                for (int j = 0; j < len; j++) dst[i * d + j0 + j] = (keep >> j) & 1 ? src[j] : 0.0f;
            }
        }
    }
    s->count[part ? MST_ATTN_K : MST_ATTN_Q] += all;
    s->count[part ? MST_ATTN_K_KEPT : MST_ATTN_Q_KEPT] += kept;
}

typedef uint32_t vu __attribute__((vector_size(MST_VEC * sizeof(uint32_t)), aligned(4)));
_Static_assert(MST_VEC <= 32, "gather_v expands a vector's spikes from 32 bits");

/* v of one window and head as floats (spikes expand to 0/1 a vector at a
 * time), rows of dp (the padding stays 0: it was zeroed when the unit
 * began, and a field's bits past its length are 0). */
MST_INLINE void gather_v(const mst_attn_args *a, int b, int t, scratch *s, int h)
{
    int C = a->dim, d = s->d, dp = s->dp, W3 = mst_spike_words(3 * C);
    long row0 = ((long)(t - a->t0) * a->batch + b) * a->res * a->res;
    vu lane;
    for (int l = 0; l < MST_VEC; l++) lane[l] = (uint32_t)l;
    uint64_t spikes = 0;
    for (int i = 0; i < s->n; i++) {
        float *v = s->v + i * dp;
        if (a->mode == MST_MODE_SNN) {
            const uint64_t *row = a->qkv_bits + (row0 + s->tok[i]) * W3;
            for (int j0 = 0; j0 < d; j0 += 64) {
                int len = d - j0 < 64 ? d - j0 : 64;
                uint64_t field = mst_bit_field(row, 2 * C + h * d + j0, len);
#if SPIKE_V
                if (v_as_bits(a, d)) {
                    s->vb[i] = field;
                    spikes += (uint64_t)__builtin_popcountll(field);
                    continue;
                }
#endif
                for (int c = 0; c < len; c += MST_VEC)
                    *(vf *)(v + j0 + c) = __builtin_convertvector(((uint32_t)(field >> c) >> lane) & 1u, vf);
                spikes += (uint64_t)__builtin_popcountll(field);
            }
        } else {
            memcpy(v, a->qkv + (row0 + s->tok[i]) * 3 * C + 2 * C + h * d, sizeof(float) * (size_t)d);
        }
    }
    s->count[MST_ATTN_V] += spikes;
}

/* The attn site's RSM numbers of this unit and step, at s->rnd (spec
 * section 4); returns whether the site is masked. */
MST_INLINE int draw_attn_mask(const mst_attn_args *a, int b, int win, int h, int t, scratch *s)
{
    int n = s->n;
    if (a->mask_threshold[2] == 0) return 0;
    s->rnd = philox_draw(a->seed, mst_mask_subsequence(a->first_image + (uint64_t)b, a->site_q + 2, (uint32_t)t),
                         ((uint64_t)win * a->heads + h) * (uint64_t)(n * n), (long)n * n, s->raw);
    return 1;
}

/* S <- the softmax terms of the spikes of IF_attn(popcount(q & k) * scale)
 * (over the unit's membranes), row by row: expb times the gain of level L
 * where a spike fired and the mask kept it, of level 0 elsewhere (SNN mode:
 * A's levels are 0 and L only, so no table look-up). Spikes are counted per
 * key (s->fired, s->kept: summed when the unit ends), so that a row's loop
 * has no sum across its lanes. */
MST_INLINE void scores_snn(const mst_attn_args *a, scratch *s, float *vm, int masked)
{
    int n = s->n, W = s->words;
    uint64_t threshold = a->mask_threshold[2];
    float g0 = s->gain[0], gL = s->gain[MST_QCFS_LEVELS];
    for (int i = 0; i < n; i++) {
        float *S = s->S + i * n, *v = vm + i * n;
        const float *e = s->eh + i * n;
        if (W == 1) { /* d <= 64, every released shape: a loop the compiler vectorises */
            uint64_t q = s->qb[i];
            for (int j = 0; j < n; j++) S[j] = (float)__builtin_popcountll(q & s->kb[j]) * a->qk_scale;
        } else {
            for (int j = 0; j < n; j++) {
                int cnt = 0;
                for (int w = 0; w < W; w++) cnt += __builtin_popcountll(s->qb[i * W + w] & s->kb[j * W + w]);
                S[j] = (float)cnt * a->qk_scale;
            }
        }
        if (masked) {
            const uint32_t *raw = s->rnd + i * n;
            for (int j = 0; j < n; j++) {
                int f = mst_if_step(&v[j], S[j]) != 0.0f, on = f & mst_mask_keep(raw[j], threshold);
                s->fired[j] += f, s->kept[j] += on;
                S[j] = e[j] * (on ? gL : g0);
            }
        } else {
            for (int j = 0; j < n; j++) {
                int f = mst_if_step(&v[j], S[j]) != 0.0f;
                s->fired[j] += f;
                S[j] = e[j] * (f ? gL : g0);
            }
        }
    }
}

/* S <- QCFS of q.k^T * scale (ANN mode: q and k are QCFS levels). */
MST_INLINE void scores_ann(const mst_attn_args *a, const scratch *s)
{
    int n = s->n, d = s->d;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int c = 0; c < d; c++) acc += s->q[i * d + c] * s->k[j * d + c];
            s->S[i * n + j] = mst_qcfs(acc * a->qk_scale);
        }
}

/* Rows of O = U V (mst_attn_weighted lane by lane: even and odd j in two
 * chains, then added, so the vector width never changes a result) for nv
 * vectors of channels from c0, `rows` rows of U at once so that their
 * chains overlap and share each load of v. */
MST_INLINE void weighted_rows(const float *U, int n, const float *v, int dp, int c0, float *o, const int rows,
                              const int nv)
{
    vf ev[WROWS][2], od[WROWS][2];
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nv; b++) ev[r][b] = (vf){0}, od[r][b] = (vf){0};
    int j = 0;
    for (; j + 1 < n; j += 2)
#pragma GCC unroll 2
        for (int b = 0; b < nv; b++) {
            vf v0 = *(const vf *)(v + j * dp + c0 + MST_VEC * b), v1 = *(const vf *)(v + (j + 1) * dp + c0 + MST_VEC * b);
#pragma GCC unroll 4
            for (int r = 0; r < rows; r++) ev[r][b] += U[r * n + j] * v0, od[r][b] += U[r * n + j + 1] * v1;
        }
    if (j < n)
#pragma GCC unroll 2
        for (int b = 0; b < nv; b++) {
            vf v0 = *(const vf *)(v + j * dp + c0 + MST_VEC * b);
#pragma GCC unroll 4
            for (int r = 0; r < rows; r++) ev[r][b] += U[r * n + j] * v0;
        }
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
        for (int b = 0; b < nv; b++) *(vf *)(o + r * dp + c0 + MST_VEC * b) = ev[r][b] + od[r][b];
}

/* o[r][c] = sum_j U[r][j] v[j][c] for `rows` rows over dp channels (whole
 * vectors; the padding's lanes sum zeros): two vectors and one vector at a time. */
MST_INLINE void weighted_sum(const float *U, int n, const float *v, int dp, float *o, const int rows)
{
    int c0 = 0;
    for (; c0 + 2 * MST_VEC <= dp; c0 += 2 * MST_VEC) weighted_rows(U, n, v, dp, c0, o, rows, 2);
    for (; c0 < dp; c0 += MST_VEC) weighted_rows(U, n, v, dp, c0, o, rows, 1);
}

#if SPIKE_V
/* weighted_rows where v is spikes (bits vb): U[r][j] * v[j][c] is U[r][j]
 * or +0, so each product-add is an add of U[r][j] under v's bits as a
 * mask; the adds it skips would have added +0 to a sum of non-negative
 * terms, which changes nothing (the same chains, the same bits). */
MST_INLINE void weighted_spikes(const float *U, int n, const uint64_t *vb, int c0, float *o, int dp, const int rows,
                                const int nv)
{
    __m512 ev[WROWS][2], od[WROWS][2];
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nv; b++) ev[r][b] = od[r][b] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 1 < n; j += 2)
#pragma GCC unroll 2
        for (int b = 0; b < nv; b++) {
            __mmask16 m0 = (__mmask16)(vb[j] >> (c0 + 16 * b)), m1 = (__mmask16)(vb[j + 1] >> (c0 + 16 * b));
#pragma GCC unroll 4
            for (int r = 0; r < rows; r++) {
                ev[r][b] = _mm512_mask_add_ps(ev[r][b], m0, ev[r][b], _mm512_set1_ps(U[r * n + j]));
                od[r][b] = _mm512_mask_add_ps(od[r][b], m1, od[r][b], _mm512_set1_ps(U[r * n + j + 1]));
            }
        }
    if (j < n)
#pragma GCC unroll 2
        for (int b = 0; b < nv; b++) {
            __mmask16 m0 = (__mmask16)(vb[j] >> (c0 + 16 * b));
#pragma GCC unroll 4
            for (int r = 0; r < rows; r++) ev[r][b] = _mm512_mask_add_ps(ev[r][b], m0, ev[r][b], _mm512_set1_ps(U[r * n + j]));
        }
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
        for (int b = 0; b < nv; b++) _mm512_storeu_ps(o + r * dp + c0 + 16 * b, _mm512_add_ps(ev[r][b], od[r][b]));
}
#endif

/* o[r][c] = sum_j U[r][j] v[j][c] as weighted_sum, v as spikes vb where
 * weighted_spikes runs, else as floats. */
MST_INLINE void weighted(const mst_attn_args *a, const float *U, const scratch *s, float *o, const int rows)
{
#if SPIKE_V
    if (v_as_bits(a, s->d)) {
        int c0 = 0;
        for (; c0 + 32 <= s->dp; c0 += 32) weighted_spikes(U, s->n, s->vb, c0, o, s->dp, rows, 2);
        for (; c0 < s->dp; c0 += 16) weighted_spikes(U, s->n, s->vb, c0, o, s->dp, rows, 1);
        return;
    }
#else
    (void)a;
#endif
    weighted_sum(U, s->n, s->v, s->dp, o, rows);
}

/* Each row's sum left to right (the order every backend sums in), eight
 * rows at a time so that their chains of adds overlap. */
MST_INLINE void row_sums(const float *U, int n, float *sum)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float r[8] = {0};
        for (int j = 0; j < n; j++)
#pragma GCC unroll 8
            for (int l = 0; l < 8; l++) r[l] += U[(i + l) * n + j];
        for (int l = 0; l < 8; l++) sum[i + l] = r[l];
    }
    for (; i < n; i++) {
        float r = 0.0f;
        for (int j = 0; j < n; j++) r += U[i * n + j];
        sum[i] = r;
    }
}

/* ANN mode: S (QCFS levels of A) <- the softmax terms, expb times the gain
 * of each masked level. */
MST_INLINE void softmax_terms_ann(const mst_attn_args *a, scratch *s, int masked)
{
    uint64_t threshold = a->mask_threshold[2], fired = 0, kept = 0;
    float *u = s->S;
    for (int e = 0; e < s->n * s->n; e++) {
        int keep = masked ? mst_mask_keep(s->rnd[e], threshold) : 1, f = u[e] != 0.0f;
        int level = keep * (int)(u[e] * (float)MST_QCFS_LEVELS + 0.5f);
        fired += (uint64_t)f;
        kept += (uint64_t)(f & keep);
        u[e] = s->eh[e] * s->gain[level];
    }
    s->count[MST_ATTN_S] += fired;
    s->count[MST_ATTN_S_KEPT] += kept;
}

/* A = IF_attn(S) * Ma + B_rel + M_shift, softmax over keys, times v, from
 * the terms in S. The IF (or QCFS) output takes L+1 values, so exp(A)
 * factors into the unit's exp(B_rel + M_shift) times a table: no exp in the
 * step loop. */
MST_INLINE void softmax_v(const mst_attn_args *a, int b, int t, int h, scratch *s)
{
    int n = s->n, d = s->d, C = a->dim;
    long row0 = ((long)(t - a->t0) * a->batch + b) * a->res * a->res;
    row_sums(s->S, n, s->rowsum);
    for (int i0 = 0; i0 < n; i0 += WROWS) {
        int rows = n - i0 < WROWS ? n - i0 : WROWS;
        if (rows == WROWS)
            weighted(a, s->S + i0 * n, s, s->o, WROWS);
        else
            for (int r = 0; r < rows; r++) weighted(a, s->S + (i0 + r) * n, s, s->o + r * s->dp, 1);
        for (int r = 0; r < rows; r++) {
            const float *o = s->o + r * s->dp, f = a->v_scale / s->rowsum[i0 + r];
            float *out = a->out + (row0 + s->tok[i0 + r]) * C + h * d;
            int c = 0;
            for (; c + MST_VEC <= d; c += MST_VEC) *(vf *)(out + c) = *(const vf *)(o + c) * f;
            for (; c < d; c++) out[c] = o[c] * f;
        }
    }
}

/* A window's constant part of the softmax, every head's: exp(B_rel +
 * M_shift - row max); its token map; the gains. The same for every image,
 * so a thread makes them when it moves to another window only. */
MST_INLINE void window_constants(const mst_attn_args *a, int win, scratch *s)
{
    int n = s->n;
    for (int i = 0; i < n; i++) s->tok[i] = mst_window_token(win, i, a->res, a->window, a->shift);
    for (int h = 0; h < a->heads; h++) {
        const float *rb = a->rel_bias + (long)h * n * n;
        for (int i = 0; i < n; i++) {
            float *e = s->expb + ((long)h * n + i) * n, mx = -INFINITY;
            for (int j = 0; j < n; j++) {
                e[j] = rb[i * n + j] + mst_shift_mask(win, i, j, a->res, a->window, a->shift);
                mx = e[j] > mx ? e[j] : mx;
            }
            for (int j = 0; j < n; j++) e[j] = mst_expf(e[j] - mx);
        }
    }
    /* centred on lambda/2 so that neither the gain nor a row's sum (>= the
       largest exp(bias) term, 1, times exp(-lambda/2)) leaves float range
       while lambda_attn < MST_MAX_ATTN_THRESHOLD */
    for (int l = 0; l <= MST_QCFS_LEVELS; l++)
        s->gain[l] = mst_expf(a->lam_attn * ((float)l / (float)MST_QCFS_LEVELS - 0.5f));
    s->cwin = win;
}

MST_CPU_CLONES static void unit(const mst_attn_args *a, int b, int win, int h, scratch *s)
{
    int n = s->n, nw = (a->res / a->window) * (a->res / a->window);
    float *vm = a->v_attn + ((((long)b * nw + win) * a->heads + h) * n) * n;
    if (s->cwin != win) window_constants(a, win, s);
    s->eh = s->expb + (long)h * n * n;
    memset(s->v, 0, sizeof(float) * (size_t)(n * s->dp));
    memset(s->fired, 0, sizeof(int) * (size_t)n);
    memset(s->kept, 0, sizeof(int) * (size_t)n);
    for (int t = a->t0; t < a->t0 + a->steps; t++) {
        gather_qk(a, 0, b, win, h, t, s, s->q, s->qb);
        gather_qk(a, 1, b, win, h, t, s, s->k, s->kb);
        gather_v(a, b, t, s, h);
        int masked = draw_attn_mask(a, b, win, h, t, s);
        if (a->mode == MST_MODE_SNN) {
            scores_snn(a, s, vm, masked);
        } else {
            scores_ann(a, s);
            softmax_terms_ann(a, s, masked);
        }
        softmax_v(a, b, t, h, s);
    }
    for (int j = 0; j < n; j++) {
        s->count[MST_ATTN_S] += (uint64_t)s->fired[j];
        s->count[MST_ATTN_S_KEPT] += (uint64_t)(a->mask_threshold[2] ? s->kept[j] : s->fired[j]);
    }
}

mst_status mst_cpu_window_attention(void *ctx, const mst_attn_args *a, mst_error *err)
{
    double t0 = omp_get_wtime();
    int n = a->window * a->window, d = a->dim / a->heads;
    int nw = (a->res / a->window) * (a->res / a->window), threads = omp_get_max_threads();
    long units = (long)a->batch * nw * a->heads;
    int chunk = nw >= 4 * threads ? a->batch : 1;
    size_t bytes = (scratch_bytes(n, d, a->heads) + 63) / 64 * 64;
    char *mem = aligned_alloc(64, bytes * (size_t)threads);
    if (!mem) return mst_fail(err, MST_ERR_NOMEM, "out of memory in window attention");
#pragma omp parallel
    {
        scratch s;
        scratch_carve(&s, mem + bytes * (size_t)omp_get_thread_num(), n, d, a->heads);
        /* a window's heads on one thread: they write parts of the same
           output rows, which threads would pass back and forth; a window's
           images one after the other, a run of them to a thread where there
           are windows enough, so that they share its constants */
#pragma omp for schedule(dynamic, chunk)
        for (long wb = 0; wb < (long)nw * a->batch; wb++)
            for (int h = 0; h < a->heads; h++) unit(a, (int)(wb % a->batch), (int)(wb / a->batch), h, &s);
#pragma omp critical
        for (int c = 0; a->counts && c < MST_ATTN_NCOUNTS; c++) a->counts[c] += s.count[c];
    }
    free(mem);
    /* per unit-step: n^2 scores (an AND + popcount and an IF step each in SNN
       mode, a d-long dot product in ANN mode), n^2 softmax terms, n^2 d products */
    double per = (double)n * n * (a->mode == MST_MODE_SNN ? 2 : d + 1) + (double)n * n * d;
    mst_cpu_tally(ctx, MST_OP_ATTENTION, per * (double)units * a->steps, t0);
    return MST_OK;
}
