/* Linear layers: analog inputs through OpenBLAS, spike inputs by synaptic
 * accumulation. Both give each row a result that depends on that row alone,
 * so logits are bit-identical for any batch size or time chunk. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/error.h"
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

/* The last, partial tile runs padded with zero rows in the backend's scratch. */
static mst_status padded_tile(mst_cpu *cpu, const float *x, long rows, int K, const float *w, int N, float *y,
                              mst_error *err)
{
    size_t nx = (size_t)GEMM_ROWS * K, ny = (size_t)GEMM_ROWS * N;
    mst_status r = mst_cpu_scratch(cpu, nx + ny, err);
    if (r != MST_OK) return r;
    float *px = cpu->scratch, *py = cpu->scratch + nx;
    memcpy(px, x, sizeof(float) * (size_t)(rows * K));
    memset(px + rows * K, 0, sizeof(float) * (nx - (size_t)(rows * K)));
    memcpy(py, y, sizeof(float) * (size_t)(rows * N));
    tile(px, GEMM_ROWS, K, w, N, py);
    memcpy(y, py, sizeof(float) * (size_t)(rows * N));
    return MST_OK;
}

static void fill_bias(float *y, long M, const float *b, int N)
{
#pragma omp parallel for schedule(static)
    for (long m = 0; m < M; m++)
        for (int n = 0; n < N; n++) y[m * N + n] = b ? b[n] : 0.0f;
}

mst_status mst_cpu_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N,
                          float *y, mst_error *err)
{
    long full = M / GEMM_ROWS;
    fill_bias(y, M, b, N);
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < full; t++) tile(x + t * GEMM_ROWS * K, GEMM_ROWS, K, w, N, y + t * GEMM_ROWS * N);
    long done = full * GEMM_ROWS;
    return M > done ? padded_tile(ctx, x + done * K, M - done, K, w, N, y + done * N, err) : MST_OK;
}

/* Spike rows run in blocks: the active-input lists of ROW_BLOCK rows are
 * built once, then each block of 128 output columns is accumulated in
 * registers row by row while that column block of w stays in cache. */
#define ROW_BLOCK 32
#define VEC 16
typedef float vf __attribute__((vector_size(VEC * sizeof(float)), aligned(4)));

static int active_inputs(const float *x, int K, int *active)
{
    int nnz = 0;
    for (int k = 0; k < K; k++) { /* branch-free: spikes are too irregular to predict */
        active[nnz] = k;
        nnz += x[k] != 0.0f;
    }
    return nnz;
}

/* y[n0, n0 + nv*16) = b + the sum of w rows over the active inputs, in input
 * order. Inlined with a constant nv so the accumulators live in registers. */
static inline __attribute__((always_inline)) void columns(const int *act, int nnz, const float *w, int N, int n0,
                                                          const float *b, float *y, const int nv)
{
    vf a[8];
    for (int v = 0; v < nv; v++) a[v] = b ? *(const vf *)(b + n0 + v * VEC) : (vf){0};
    for (int q = 0; q < nnz; q++) {
        const float *wr = w + (long)act[q] * N + n0;
        for (int v = 0; v < nv; v++) a[v] += *(const vf *)(wr + v * VEC);
    }
    for (int v = 0; v < nv; v++) *(vf *)(y + n0 + v * VEC) = a[v];
}

static void columns_scalar(const int *act, int nnz, const float *w, int N, int n0, int n1, const float *b,
                           float *y)
{
    for (int n = n0; n < n1; n++) {
        float acc = b ? b[n] : 0.0f;
        for (int q = 0; q < nnz; q++) acc += w[(long)act[q] * N + n];
        y[n] = acc;
    }
}

/* Columns [n0, n1) of one row (at most 128): whole vectors, then the rest. */
static void spike_row(const int *act, int nnz, const float *w, int N, int n0, int n1, const float *b, float *y)
{
    switch ((n1 - n0) / VEC) {
    case 8: columns(act, nnz, w, N, n0, b, y, 8); break;
    case 7: columns(act, nnz, w, N, n0, b, y, 7); break;
    case 6: columns(act, nnz, w, N, n0, b, y, 6); break;
    case 5: columns(act, nnz, w, N, n0, b, y, 5); break;
    case 4: columns(act, nnz, w, N, n0, b, y, 4); break;
    case 3: columns(act, nnz, w, N, n0, b, y, 3); break;
    case 2: columns(act, nnz, w, N, n0, b, y, 2); break;
    case 1: columns(act, nnz, w, N, n0, b, y, 1); break;
    default: break;
    }
    n0 += (n1 - n0) / VEC * VEC;
    if (n0 < n1) columns_scalar(act, nnz, w, N, n0, n1, b, y);
}

/* x holds spikes, exactly 0 or 1 (IF outputs with out_scale 1). */
static void spike_rows(const float *x, int rows, int K, const float *w, const float *b, int N, float *y, int *act)
{
    int nnz[ROW_BLOCK];
    for (int r = 0; r < rows; r++) nnz[r] = active_inputs(x + (long)r * K, K, act + r * K);
    /* column blocks outermost: a block of w serves all rows while in cache */
    for (int n0 = 0; n0 < N; n0 += 8 * VEC) {
        int n1 = n0 + 8 * VEC < N ? n0 + 8 * VEC : N;
        for (int r = 0; r < rows; r++) spike_row(act + r * K, nnz[r], w, N, n0, n1, b, y + (long)r * N);
    }
}

mst_status mst_cpu_spike_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N,
                                float *y, mst_error *err)
{
    (void)ctx;
    size_t per = (size_t)K * ROW_BLOCK;
    int *act = malloc(sizeof(int) * per * (size_t)omp_get_max_threads());
    if (!act) return mst_fail(err, MST_ERR_NOMEM, "out of memory in spike_linear (K = %d)", K);
#pragma omp parallel
    {
        int *mine = act + per * (size_t)omp_get_thread_num();
#pragma omp for schedule(dynamic, 4)
        for (long r0 = 0; r0 < M; r0 += ROW_BLOCK) {
            int rows = M - r0 < ROW_BLOCK ? (int)(M - r0) : ROW_BLOCK;
            spike_rows(x + r0 * K, rows, K, w, b, N, y + r0 * N, mine);
        }
    }
    free(act);
    return MST_OK;
}
