#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "cpu_backend.h"
#include "cpu_ops.h"

/* Rows of `channels` neurons; a block of rows keeps its membranes in L1
 * while the scan walks the steps. */
#define ROWS_PER_BLOCK(C) ((C) >= 2048 ? 1 : 2048 / (C))

static inline float affine_in(const mst_if_args *a, long t, long r, int c)
{
    float u = a->in[t * a->in_tstride + r];
    return a->scale ? u * a->scale[c] + a->shift[c] : u;
}

static void scan_rows(const mst_if_args *a, long row0, long row1)
{
    int C = a->channels;
    for (int t = 0; t < a->steps; t++)
        for (long row = row0; row < row1; row++)
            for (int c = 0; c < C; c++) {
                long r = row * C + c;
                float z = affine_in(a, t, r, c);
                a->out[(long)t * a->R + r] = mst_if_step(&a->v[r], z) * a->out_scale;
            }
}

/* 0/1 floats -> bits. AVX-512 compares 16 at a time into a mask register;
 * elsewhere a plain loop. */
static void pack_row(const float *s, int C, uint64_t *dst)
{
    for (int w = 0; w < mst_spike_words(C); w++) {
        uint64_t word = 0;
        int c = 64 * w, end = C < c + 64 ? C : c + 64;
#ifdef __AVX512F__
        for (; c + 16 <= end; c += 16)
            word |= (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + c), _mm512_setzero_ps(), _CMP_NEQ_UQ)
                    << (c - 64 * w);
#endif
        for (; c < end; c++) word |= (uint64_t)(s[c] != 0.0f) << (c - 64 * w);
        dst[w] = word;
    }
}

/* The same scan, spikes packed 64 to a word: each row runs the vectorised
 * float scan into `tmp`, then packs it. */
static void scan_rows_packed(const mst_if_args *a, long row0, long row1, float *tmp)
{
    int C = a->channels, W = mst_spike_words(C);
    long rows = a->R / C;
    for (int t = 0; t < a->steps; t++)
        for (long row = row0; row < row1; row++) {
            for (int c = 0; c < C; c++) {
                long r = row * C + c;
                tmp[c] = mst_if_step(&a->v[r], affine_in(a, t, r, c));
            }
            pack_row(tmp, C, a->bits + ((long)t * rows + row) * W);
        }
}

mst_status mst_cpu_if_scan(void *ctx, const mst_if_args *a, mst_error *err)
{
    mst_cpu *cpu = ctx;
    long rows = a->R / a->channels, per = ROWS_PER_BLOCK(a->channels);
    int threads = omp_get_max_threads();
    mst_status r = a->bits ? mst_cpu_scratch(cpu, (size_t)a->channels * (size_t)threads, err) : MST_OK;
    if (r != MST_OK) return r;
#pragma omp parallel for schedule(static)
    for (long r0 = 0; r0 < rows; r0 += per) {
        long r1 = r0 + per < rows ? r0 + per : rows;
        if (a->bits)
            scan_rows_packed(a, r0, r1, cpu->scratch + (size_t)a->channels * (size_t)omp_get_thread_num());
        else
            scan_rows(a, r0, r1);
    }
    return MST_OK;
}

mst_status mst_cpu_qcfs(void *ctx, const mst_if_args *a, mst_error *err)
{
    (void)ctx;
    (void)err;
    int C = a->channels;
#pragma omp parallel for collapse(2) schedule(static)
    for (int t = 0; t < a->steps; t++)
        for (long r = 0; r < a->R; r++)
            a->out[(long)t * a->R + r] = mst_qcfs(affine_in(a, t, r, (int)(r % C))) * a->out_scale;
    return MST_OK;
}
