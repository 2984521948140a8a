/* Synapses fed by spikes, fused with the IF site they feed. Each input spike
 * adds its weight row; the potentials of a block of tokens go straight into
 * their membranes, step after step, so no float potential tensor is written
 * and read back. A row's sums run in the order of its own spikes only, so the
 * result never depends on the other rows (batch, time chunk). */
#include <immintrin.h>
#include <limits.h>
#include <stdlib.h>

#include "../../host/error.h"
#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "cpu_backend.h"
#include "cpu_fire.h"
#include "cpu_ops.h"
#include "cpu_vec.h"

/* The weights in panels: COL_BLOCK output columns of every input, w[k][n0 ..
 * n0 + COL_BLOCK) one after the other (the last panel padded with zeros to
 * whole vectors), so that the rows a panel's adds pick from are one
 * contiguous run: no cache-set conflicts where N is a power of two, and
 * every load a whole vector. The sums of a row run in a fixed order of its
 * own spikes only: the bias and the first half of its active inputs in
 * input order, the second half likewise in another accumulator set (two
 * chains of adds overlap), then the two added. Panels, vector width and the
 * other rows never change it, so neither do a row's bits. */
#define ROW_BLOCK 64
#define VEC MST_VEC
#define NV MST_ACC_VECS
#define COL_BLOCK (NV * VEC)
#define COL_SHIFT __builtin_ctz(COL_BLOCK)
_Static_assert((COL_BLOCK & (COL_BLOCK - 1)) == 0, "active_inputs shifts by log2(COL_BLOCK)");
typedef mst_vf vf;

static int panels(int N) { return (N + COL_BLOCK - 1) / COL_BLOCK; }

/* w [K][N] and b [N] (or NULL) into panels [P][K][COL_BLOCK] and a padded bias [P * COL_BLOCK]. */
static void pack_panels(const float *w, const float *b, int K, int N, float *packed)
{
    int P = panels(N);
    float *bias = packed + (size_t)P * K * COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (long pk = 0; pk < (long)P * K; pk++) {
        int p = (int)(pk / K), k = (int)(pk % K), n0 = p * COL_BLOCK;
        float *dst = packed + (size_t)pk * COL_BLOCK;
        for (int j = 0; j < COL_BLOCK; j++) dst[j] = n0 + j < N ? w[(size_t)k * N + n0 + j] : 0.0f;
    }
    for (int n = 0; n < P * COL_BLOCK; n++) bias[n] = b && n < N ? b[n] : 0.0f;
}

/* Eight offsets (position + base) * COL_BLOCK from eight byte positions,
 * stored at dst: a zero-extension the compiler does not make of a vector
 * conversion (it builds the vector a byte at a time). */
MST_INLINE void store_offsets(const uint8_t *pos, int base, int *dst)
{
#if defined(__AVX2__)
    __m256i p = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)pos));
    _mm256_storeu_si256((__m256i *)dst, _mm256_slli_epi32(_mm256_add_epi32(p, _mm256_set1_epi32(base)), COL_SHIFT));
#else
    __m128i zero = _mm_setzero_si128(), b = _mm_set1_epi32(base);
    __m128i p16 = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)pos), zero);
    __m128i lo = _mm_add_epi32(_mm_unpacklo_epi16(p16, zero), b), hi = _mm_add_epi32(_mm_unpackhi_epi16(p16, zero), b);
    _mm_storeu_si128((__m128i *)dst, _mm_slli_epi32(lo, COL_SHIFT));
    _mm_storeu_si128((__m128i *)(dst + 4), _mm_slli_epi32(hi, COL_SHIFT));
#endif
}

/* The offsets (input * COL_BLOCK, within a panel) of the inputs that the
 * spikes x select, in input order, a byte of inputs at a time: eight
 * offsets written, the count advanced by the byte's spikes (so `active`
 * has room for 8 past the last). */
MST_INLINE int active_inputs(const uint64_t *x, int K, const mst_byte_bits *bb, int *active)
{
    int nnz = 0;
    for (int i = 0; i < (K + 7) / 8; i++) {
        unsigned byte = (unsigned)(x[i / 8] >> (8 * (i % 8))) & 255u;
        store_offsets(bb->pos[byte], 8 * i, active + nnz);
        nnz += bb->count[byte];
    }
    return nnz;
}

/* y[0, nv*VEC) = the bias + one panel's rows at offsets act[0..cnt).
 * Inlined with a constant nv: the accumulators live in registers. */
MST_INLINE void add_rows(const int *act, int cnt, const float *w, const float *bias, float *y, const int nv)
{
    vf a[NV], c[NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) a[v] = *(const vf *)(bias + v * VEC), c[v] = (vf){0};
    int half = cnt / 2;
    for (int q = 0; q < half; q++) {
        const float *wa = w + act[q], *wc = w + act[half + q];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            a[v] += *(const vf *)(wa + v * VEC);
            c[v] += *(const vf *)(wc + v * VEC);
        }
    }
    if (cnt & 1)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) c[v] += *(const vf *)(w + act[cnt - 1] + v * VEC);
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) *(vf *)(y + v * VEC) = a[v] + c[v];
}

/* One panel of one row: as many whole vectors as its columns need. */
MST_INLINE void add_panel(const int *act, int cnt, const float *w, const float *bias, float *y, int vectors)
{
    switch (vectors) {
    case 1: add_rows(act, cnt, w, bias, y, 1); break;
    case 2: add_rows(act, cnt, w, bias, y, 2); break;
#if NV > 2
    case 3: add_rows(act, cnt, w, bias, y, 3); break;
    case 4: add_rows(act, cnt, w, bias, y, 4); break;
#endif
    default: break;
    }
}

/* Rows in order of their spike counts (COUNT_BUCKETS - 1 and more
 * together): the add loops' trip counts then repeat from row to row and the
 * branch predictor follows them; in token order they are random and each
 * loop's end mispredicts, which costs rows of ~4 spikes a sixth of their
 * time. The order of the rows never changes a row's sums. */
#define COUNT_BUCKETS 16
#define SORT_BELOW 6 /* spikes per row, on average over the block */
MST_INLINE int bucket(int nnz) { return nnz < COUNT_BUCKETS - 1 ? nnz : COUNT_BUCKETS - 1; }

MST_INLINE void by_count(const int *nnz, int rows, unsigned char *order)
{
    int start[COUNT_BUCKETS + 1] = {0};
    for (int r = 0; r < rows; r++) start[bucket(nnz[r]) + 1]++;
    for (int c = 0; c < COUNT_BUCKETS; c++) start[c + 1] += start[c];
    for (int r = 0; r < rows; r++) order[start[bucket(nnz[r])]++] = (unsigned char)r;
}

/* Panel p of one row's potentials (y: the row's [P * COL_BLOCK]). */
MST_INLINE void row_panel(const int *act, int nnz, int K, const float *packed, int N, int p, float *y)
{
    int P = panels(N), cols = N - p * COL_BLOCK < COL_BLOCK ? N - p * COL_BLOCK : COL_BLOCK;
    const float *bias = packed + (size_t)P * K * COL_BLOCK;
    add_panel(act, nnz, packed + (size_t)p * K * COL_BLOCK, bias + p * COL_BLOCK, y + p * COL_BLOCK,
              (cols + VEC - 1) / VEC);
}

/* The potentials of rows whose active inputs are listed in act (nnz each):
 * rows of many spikes panel by panel, so that a panel serves the whole
 * block while it is in cache; rows of few spikes (their gathers are few,
 * their loops' ends many) one at a time, every panel, in order of their
 * counts: a row's panels then have one trip count, and so do its
 * neighbours'. */
MST_INLINE void add_block(const int *act, const int *nnz, long spikes, int rows, int K, const float *packed, int N,
                          float *y)
{
    int P = panels(N), Np = P * COL_BLOCK;
    if (spikes < SORT_BELOW * rows) {
        unsigned char order[ROW_BLOCK];
        by_count(nnz, rows, order);
        for (int i = 0; i < rows; i++)
            for (int p = 0; p < P; p++)
                row_panel(act + (long)order[i] * K, nnz[order[i]], K, packed, N, p, y + (long)order[i] * Np);
        return;
    }
    for (int p = 0; p < P; p++)
        for (int r = 0; r < rows; r++) row_panel(act + (long)r * K, nnz[r], K, packed, N, p, y + (long)r * Np);
}

/* The potentials of `rows` rows of spikes x into y [rows][P * COL_BLOCK];
 * returns their input spikes (each adds N floats). */
MST_INLINE long spike_rows(const uint64_t *x, int rows, int K, const float *packed, int N, const mst_byte_bits *bb,
                           float *y, int *act)
{
    int nnz[ROW_BLOCK]; /* 256 B of stack */
    long spikes = 0;
    for (int r = 0; r < rows; r++) spikes += nnz[r] = active_inputs(x + (long)r * mst_spike_words(K), K, bb, act + (long)r * K);
    add_block(act, nnz, spikes, rows, K, packed, N, y);
    return spikes;
}

/* The spikes of one row (left in z by the fire) into its residual stream
 * x, then the IF site that reads x where there is one, as if_scan runs it
 * (z for its inputs; v and bits: its row). Returns that site's spikes. */
MST_INLINE int fold_row(float *z, int N, float out_scale, const mst_residual_fold *f, float *x, float *v, uint64_t *bits)
{
    const mst_fold_site *s = &f->next;
    for (int n = 0; n < N; n++) x[n] = mst_residual(x[n], z[n] * out_scale, f->lam, f->scale, f->shift, n);
    if (!s->v) return 0;
    for (int n = 0; n < N; n++) z[n] = mst_if_affine(x[n], s->scale, s->shift, n);
    return fire_row(v, z, N, bits, NULL, 1.0f);
}

/* One block of tokens over all steps: potentials into `tile`, then fired;
 * *next_fired: the spikes of the fold's next site. */
MST_CPU_CLONES static uint64_t synapse_block(const mst_synapse_args *a, const float *packed, const mst_byte_bits *bb,
                                             long r0, int rows, float *tile, int *act, uint64_t *next_fired,
                                             uint64_t *spikes)
{
    int WK = mst_spike_words(a->K), WN = mst_spike_words(a->N), N = a->N, Np = panels(N) * COL_BLOCK;
    const mst_fold_site *s = &a->fold.next;
    uint64_t fired = 0;
    for (int t = 0; t < a->steps; t++) {
        long first = (long)t * a->R + r0;
        *spikes += (uint64_t)spike_rows(a->x + first * WK, rows, a->K, packed, N, bb, tile, act);
        for (int r = 0; r < rows; r++) {
            float *z = tile + (long)r * Np;
            fired += (uint64_t)fire_row(a->v + (r0 + r) * N, z, N, a->bits ? a->bits + (first + r) * WN : NULL,
                                        a->out ? a->out + (first + r) * N : NULL, a->out_scale);
            if (!a->bits && !a->out && a->fold.x)
                *next_fired += (uint64_t)fold_row(z, N, a->out_scale, &a->fold, a->fold.x + (first + r) * N,
                                                  s->v ? s->v + (r0 + r) * N : NULL, s->v ? s->bits + (first + r) * WN : NULL);
        }
    }
    return fired;
}

/* Floats of one thread's tiles for blocks of `block` tokens: potentials and
 * active-input lists (ints count as floats; 8 spare for active_inputs), to a
 * whole cache line. */
static size_t tile_floats(long block, int K, int N)
{
    return ((size_t)block * ((size_t)panels(N) * COL_BLOCK + (size_t)K) + 8 + 15) / 16 * 16;
}

size_t mst_cpu_synapse_panels(int K, int N) { return (size_t)panels(N) * COL_BLOCK * ((size_t)K + 1); }

size_t mst_cpu_synapse_scratch(int K, int N, int threads) { return (size_t)threads * tile_floats(ROW_BLOCK, K, N); }

/* The weights in panels: the backend's kept copy where the engine says w is
 * fixed (made on first use), else packed into scratch for this call. */
static mst_status panels_of(mst_cpu *cpu, const mst_synapse_args *a, float *scratch, const float **out, mst_error *err)
{
    size_t n = mst_cpu_synapse_panels(a->K, a->N);
    if (!a->w_fixed) {
        pack_panels(a->w, a->b, a->K, a->N, scratch);
        *out = scratch;
        return MST_OK;
    }
    for (const mst_cpu_panels *k = cpu->panels; k; k = k->next)
        if (k->w == a->w && k->b == a->b && k->K == a->K && k->N == a->N) {
            *out = k->packed;
            return MST_OK;
        }
    mst_cpu_panels *k = calloc(1, sizeof *k);
    float *packed = aligned_alloc(64, sizeof(float) * n);
    if (!k || !packed) {
        free(k), free(packed);
        return mst_fail(err, MST_ERR_NOMEM, "out of memory for a %d x %d synapse's weight panels", a->K, a->N);
    }
    pack_panels(a->w, a->b, a->K, a->N, packed);
    *k = (mst_cpu_panels){a->w, a->b, a->K, a->N, packed, sizeof(float) * n, cpu->panels};
    cpu->panels = k;
    *out = packed;
    return MST_OK;
}

mst_status mst_cpu_synapse_if(void *ctx, const mst_synapse_args *a, mst_error *err)
{
    mst_cpu *cpu = ctx;
    int threads = omp_get_max_threads();
    if ((long)a->K * COL_BLOCK > INT_MAX) /* active_inputs keeps offsets as int */
        return mst_fail(err, MST_ERR_UNSUPPORTED, "a synapse with %d inputs is beyond the CPU kernel", a->K);
    /* enough token blocks to keep every thread busy */
    long block = a->R / (4L * threads);
    block = block < 8 ? 8 : (block > ROW_BLOCK ? ROW_BLOCK : block);
    size_t own = a->w_fixed ? 0 : mst_cpu_synapse_panels(a->K, a->N), per = tile_floats(block, a->K, a->N);
    mst_status r = mst_cpu_scratch(cpu, own + per * (size_t)threads, err);
    const float *packed = NULL;
    if (r == MST_OK) r = panels_of(cpu, a, cpu->scratch, &packed, err);
    if (r != MST_OK) return r;
    int Np = panels(a->N) * COL_BLOCK;
    uint64_t fired = 0, next_fired = 0, spikes = 0;
    double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : fired, next_fired, spikes)
    {
        float *tile = cpu->scratch + own + per * (size_t)omp_get_thread_num();
        int *act = (int *)(tile + (size_t)block * Np);
#pragma omp for schedule(dynamic, 1)
        for (long r0 = 0; r0 < a->R; r0 += block) {
            int rows = (int)(a->R - r0 < block ? a->R - r0 : block);
            fired += synapse_block(a, packed, &cpu->byte_bits, r0, rows, tile, act, &next_fired, &spikes);
        }
    }
    mst_cpu_tally(cpu, MST_OP_SYNAPSE, (double)spikes * a->N, t0);
    if (a->count) *a->count += fired;
    if (a->fold.next.count) *a->fold.next.count += next_fired;
    return MST_OK;
}
