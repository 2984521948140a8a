/* Linear layers: analog inputs through OpenBLAS, spike inputs by synaptic
 * accumulation. Both give each row a result that depends on that row alone,
 * so logits are bit-identical for any batch size or time chunk. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/error.h"
#include "../common/mst_bits.h"
#include "cpu_backend.h"
#include "cpu_ops.h"

/* Every sgemm call has the same shape (GEMM_ROWS x N x K): OpenBLAS picks its
 * kernels (small-matrix paths, tails) from the shape, so a row's result would
 * otherwise depend on how many rows share the call. A multiple of 32 rows
 * leaves no row tail inside OpenBLAS's micro-kernels. */
#define GEMM_ROWS 256

static void tile(const float *x, int rows, int K, const float *w, int N, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, N, K, 1.0f, x, K, w, N, 1.0f, y, N);
}

static void fill_bias(float *y, long M, const float *b, int N)
{
#pragma omp parallel for schedule(static)
    for (long m = 0; m < M; m++)
        for (int n = 0; n < N; n++) y[m * N + n] = b ? b[n] : 0.0f;
}

/* Tile t of the call; the last, partial one runs zero-padded in `pad`. */
static void any_tile(long t, const float *x, long M, int K, const float *w, int N, float *y, float *pad)
{
    long m0 = t * GEMM_ROWS, rows = M - m0 < GEMM_ROWS ? M - m0 : GEMM_ROWS;
    if (rows == GEMM_ROWS) {
        tile(x + m0 * K, GEMM_ROWS, K, w, N, y + m0 * N);
        return;
    }
    float *px = pad, *py = pad + (size_t)GEMM_ROWS * K;
    memcpy(px, x + m0 * K, sizeof(float) * (size_t)(rows * K));
    memset(px + rows * K, 0, sizeof(float) * (size_t)((GEMM_ROWS - rows) * K));
    memcpy(py, y + m0 * N, sizeof(float) * (size_t)(rows * N));
    tile(px, GEMM_ROWS, K, w, N, py);
    memcpy(y + m0 * N, py, sizeof(float) * (size_t)(rows * N));
}

/* Every tile, the padded one too, is called inside the parallel region, so
 * OpenBLAS (OpenMP build) runs each call single-threaded: one code path. */
mst_status mst_cpu_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N,
                          float *y, mst_error *err)
{
    mst_cpu *cpu = ctx;
    long tiles = (M + GEMM_ROWS - 1) / GEMM_ROWS;
    mst_status r = mst_cpu_scratch(cpu, (size_t)GEMM_ROWS * (size_t)(K + N), err);
    if (r != MST_OK) return r;
    fill_bias(y, M, b, N);
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < tiles; t++) any_tile(t, x, M, K, w, N, y, cpu->scratch);
    return MST_OK;
}

/* Spike rows run in tiles: the active-input lists of up to ROW_BLOCK rows are
 * built once; then for each block of 64 output columns (that slice of w stays
 * in cache) every row adds the w rows of its active inputs. The order of the
 * sums is fixed by the row's own spikes, never by the other rows. */
#define ROW_BLOCK 256
#define VEC 16
#define COL_BLOCK (4 * VEC)
typedef float vf __attribute__((vector_size(VEC * sizeof(float)), aligned(4)));

static int active_inputs(const uint64_t *x, int K, int *active)
{
    int nnz = 0;
    for (int w = 0; w < mst_spike_words(K); w++)
        for (uint64_t m = x[w]; m; m &= m - 1) active[nnz++] = 64 * w + __builtin_ctzll(m);
    return nnz;
}

/* y[n0, n0 + nv*16) += the w rows of inputs act[0..cnt). Two accumulator sets
 * (first and second half of the list) keep enough adds in flight; inlined
 * with a constant nv so the accumulators live in registers. */
static inline __attribute__((always_inline)) void add_rows(const int *act, int cnt, const float *w, int N, int n0,
                                                           float *y, const int nv)
{
    vf a[4], c[4];
    int half = cnt / 2;
    for (int v = 0; v < nv; v++) {
        a[v] = *(const vf *)(y + n0 + v * VEC);
        c[v] = (vf){0};
    }
    for (int q = 0; q < half; q++) {
        const float *wa = w + (long)act[q] * N + n0, *wc = w + (long)act[half + q] * N + n0;
        for (int v = 0; v < nv; v++) {
            a[v] += *(const vf *)(wa + v * VEC);
            c[v] += *(const vf *)(wc + v * VEC);
        }
    }
    if (cnt & 1)
        for (int v = 0; v < nv; v++) c[v] += *(const vf *)(w + (long)act[cnt - 1] * N + n0 + v * VEC);
    for (int v = 0; v < nv; v++) *(vf *)(y + n0 + v * VEC) = a[v] + c[v];
}

/* The same, one column at a time, for the last n1 - n0 < 16 columns. */
static void add_rows_scalar(const int *act, int cnt, const float *w, int N, int n0, int n1, float *y)
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

/* Columns [n0, n1) (at most 64) of one row: whole vectors, then the rest. */
static void add_columns(const int *act, int cnt, const float *w, int N, int n0, int n1, float *y)
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

static void spike_rows(const uint64_t *x, int rows, int K, const float *w, const float *b, int N, float *y, int *act)
{
    int nnz[ROW_BLOCK]; /* 1 KB of stack */
    for (int r = 0; r < rows; r++) nnz[r] = active_inputs(x + (long)r * mst_spike_words(K), K, act + r * K);
    for (int n0 = 0; n0 < N; n0 += COL_BLOCK) {
        int n1 = n0 + COL_BLOCK < N ? n0 + COL_BLOCK : N;
        for (int r = 0; r < rows; r++) {
            for (int n = n0; n < n1; n++) y[(long)r * N + n] = b ? b[n] : 0.0f;
            add_columns(act + r * K, nnz[r], w, N, n0, n1, y + (long)r * N);
        }
    }
}

mst_status mst_cpu_spike_linear(void *ctx, const uint64_t *x, long M, int K, const float *w, const float *b, int N,
                                float *y, mst_error *err)
{
    (void)ctx;
    int threads = omp_get_max_threads();
    /* big tiles reuse w across rows; enough tiles keep every thread busy */
    long block = M / (4L * threads);
    block = block < 16 ? 16 : (block > ROW_BLOCK ? ROW_BLOCK : block);
    size_t per = (size_t)K * (size_t)block;
    int *act = malloc(sizeof(int) * per * (size_t)threads);
    if (!act) return mst_fail(err, MST_ERR_NOMEM, "out of memory in spike_linear (K = %d)", K);
#pragma omp parallel
    {
        int *mine = act + per * (size_t)omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (long r0 = 0; r0 < M; r0 += block) {
            int rows = (int)(M - r0 < block ? M - r0 : block);
            spike_rows(x + r0 * mst_spike_words(K), rows, K, w, b, N, y + r0 * N, mine);
        }
    }
    free(act);
    return MST_OK;
}
