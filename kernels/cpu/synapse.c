/* Synapses fed by spikes, fused with the IF site they feed. Each input spike
 * adds its weight row; the potentials of a block of tokens go straight into
 * their membranes, step after step, so no float potential tensor is written
 * and read back. A row's sums run in the order of its own spikes only, so the
 * result never depends on the other rows (batch, time chunk). */
#include <stdlib.h>
#include <string.h>

#include "../../host/error.h"
#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "cpu_backend.h"
#include "cpu_ops.h"
#include "cpu_vec.h"

/* Spike rows run in tiles: the active-input lists of up to ROW_BLOCK rows are
 * built once; then for each block of COL_BLOCK output columns (that slice of w stays
 * in cache) every row adds the w rows of its active inputs. The order of the
 * sums is fixed by the row's own spikes, never by the other rows. */
#define ROW_BLOCK 64
#define VEC MST_VEC
#define COL_BLOCK (4 * VEC)
typedef mst_vf vf;

MST_INLINE int active_inputs(const uint64_t *x, int K, int *active)
{
    int nnz = 0;
    for (int w = 0; w < mst_spike_words(K); w++)
        for (uint64_t m = x[w]; m; m &= m - 1) active[nnz++] = 64 * w + __builtin_ctzll(m);
    return nnz;
}

/* y[n0, n0 + nv*16) += the w rows of inputs act[0..cnt). Two accumulator sets
 * (first and second half of the list) keep enough adds in flight; inlined
 * with a constant nv so the accumulators live in registers. */
MST_INLINE void add_rows(const int *act, int cnt, const float *w, int N, int n0, float *y, const int nv)
{
    vf a[4], c[4];
    int half = cnt / 2;
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        a[v] = *(const vf *)(y + n0 + v * VEC);
        c[v] = (vf){0};
    }
    for (int q = 0; q < half; q++) {
        const float *wa = w + (long)act[q] * N + n0, *wc = w + (long)act[half + q] * N + n0;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            a[v] += *(const vf *)(wa + v * VEC);
            c[v] += *(const vf *)(wc + v * VEC);
        }
    }
    if (cnt & 1)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) c[v] += *(const vf *)(w + (long)act[cnt - 1] * N + n0 + v * VEC);
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) *(vf *)(y + n0 + v * VEC) = a[v] + c[v];
}

/* The same, one column at a time, for the last n1 - n0 < VEC columns. */
MST_INLINE void add_rows_scalar(const int *act, int cnt, const float *w, int N, int n0, int n1, float *y)
{
    int half = cnt / 2;
    for (int n = n0; n < n1; n++) {
        float a = y[n], c = 0.0f;
        for (int q = 0; q < half; q++) {
            a += w[(long)act[q] * N + n];
            c += w[(long)act[half + q] * N + n];
        }
        if (cnt & 1) c += w[(long)act[cnt - 1] * N + n];
        y[n] = a + c;
    }
}

/* Columns [n0, n1) (at most COL_BLOCK) of one row: whole vectors, then the rest. */
MST_INLINE void add_columns(const int *act, int cnt, const float *w, int N, int n0, int n1, float *y)
{
    switch ((n1 - n0) / VEC) {
    case 4: add_rows(act, cnt, w, N, n0, y, 4); break;
    case 3: add_rows(act, cnt, w, N, n0, y, 3); break;
    case 2: add_rows(act, cnt, w, N, n0, y, 2); break;
    case 1: add_rows(act, cnt, w, N, n0, y, 1); break;
    default: break;
    }
    int done = n0 + (n1 - n0) / VEC * VEC;
    if (done < n1) add_rows_scalar(act, cnt, w, N, done, n1, y);
}

/* Returns the input spikes of the rows (each adds N floats). */
MST_INLINE long spike_rows(const uint64_t *x, int rows, int K, const float *w, const float *b, int N, float *y, int *act)
{
    int nnz[ROW_BLOCK]; /* 1 KB of stack */
    long spikes = 0;
    for (int r = 0; r < rows; r++) spikes += nnz[r] = active_inputs(x + (long)r * mst_spike_words(K), K, act + r * K);
    for (int n0 = 0; n0 < N; n0 += COL_BLOCK) {
        int n1 = n0 + COL_BLOCK < N ? n0 + COL_BLOCK : N;
        for (int r = 0; r < rows; r++) {
            for (int n = n0; n < n1; n++) y[(long)r * N + n] = b ? b[n] : 0.0f;
            add_columns(act + r * K, nnz[r], w, N, n0, n1, y + (long)r * N);
        }
    }
    return spikes;
}

/* The spikes of one row (left in z by the fire) into its residual stream
 * x, then the IF site that reads x where there is one, as if_scan runs it
 * (z for its inputs; v and bits: its row). Returns that site's spikes. */
static int fold_row(float *z, int N, float out_scale, const mst_residual_fold *f, float *x, float *v, uint64_t *bits)
{
    const mst_fold_site *s = &f->next;
    for (int n = 0; n < N; n++) x[n] = mst_residual(x[n], z[n] * out_scale, f->lam, f->scale, f->shift, n);
    if (!s->v) return 0;
    for (int n = 0; n < N; n++) z[n] = mst_if_affine(x[n], s->scale, s->shift, n);
    return mst_cpu_fire_row(v, z, N, bits, NULL, 1.0f);
}

/* One block of tokens over all steps: potentials into `tile`, then fired;
 * *next_fired: the spikes of the fold's next site. */
MST_CPU_CLONES static uint64_t synapse_block(const mst_synapse_args *a, long r0, int rows, float *tile, int *act,
                                             uint64_t *next_fired, uint64_t *spikes)
{
    int WK = mst_spike_words(a->K), WN = mst_spike_words(a->N), N = a->N;
    const mst_fold_site *s = &a->fold.next;
    uint64_t fired = 0;
    for (int t = 0; t < a->steps; t++) {
        long first = (long)t * a->R + r0;
        *spikes += (uint64_t)spike_rows(a->x + first * WK, rows, a->K, a->w, a->b, N, tile, act);
        for (int r = 0; r < rows; r++) {
            float *z = tile + (long)r * N;
            fired += (uint64_t)mst_cpu_fire_row(a->v + (r0 + r) * N, z, N, a->bits ? a->bits + (first + r) * WN : NULL,
                                                a->out ? a->out + (first + r) * N : NULL, a->out_scale);
            if (!a->bits && !a->out && a->fold.x)
                *next_fired += (uint64_t)fold_row(z, N, a->out_scale, &a->fold, a->fold.x + (first + r) * N,
                                                  s->v ? s->v + (r0 + r) * N : NULL, s->v ? s->bits + (first + r) * WN : NULL);
        }
    }
    return fired;
}

mst_status mst_cpu_synapse_if(void *ctx, const mst_synapse_args *a, mst_error *err)
{
    mst_cpu *cpu = ctx;
    int threads = omp_get_max_threads(), N = a->N;
    /* enough token blocks to keep every thread busy; a block's potentials stay in cache */
    long block = a->R / (4L * threads);
    block = block < 8 ? 8 : (block > 64 ? 64 : block);
    size_t per = (size_t)block * ((size_t)a->K + (size_t)a->N);
    mst_status r = mst_cpu_scratch(cpu, per * (size_t)threads, err);
    if (r != MST_OK) return r;
    uint64_t fired = 0, next_fired = 0, spikes = 0;
    double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : fired, next_fired, spikes)
    {
        float *tile = cpu->scratch + per * (size_t)omp_get_thread_num();
        int *act = (int *)(tile + (size_t)block * (size_t)a->N);
#pragma omp for schedule(dynamic, 1)
        for (long r0 = 0; r0 < a->R; r0 += block) {
            int rows = (int)(a->R - r0 < block ? a->R - r0 : block);
            fired += synapse_block(a, r0, rows, tile, act, &next_fired, &spikes);
        }
    }
    mst_cpu_tally(cpu, MST_OP_SYNAPSE, (double)spikes * N, t0);
    if (a->count) *a->count += fired;
    if (a->fold.next.count) *a->fold.next.count += next_fired;
    return MST_OK;
}
