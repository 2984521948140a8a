/* Linear layers with analog inputs (patch embedding, patch-merge reduction,
 * head, and every matmul in ANN mode): y = b + x w, with x [M][K] and
 * w [K][N] row-major. (Spike inputs go through synapse.c.)
 *
 * Each output element is summed in one order, fixed by its definition:
 *
 *     y[m][n] = (...((b[n] + x[m][0] w[0][n]) + x[m][1] w[1][n]) + ...) + x[m][K-1] w[K-1][n]
 *
 * every product rounded to float, then added (the build forbids contracting
 * a*b+c into an FMA). The kernel vectorises along n only, so a vector lane is
 * this same scalar recurrence for one column: how many lanes a vector has,
 * how rows and columns are tiled, where the k loop is split (a partial sum
 * goes through y exactly), which thread runs a tile and which instruction set
 * the dispatcher picked change nothing. A row's result is thus a function of
 * that row and the weights alone: not of its position in the call, the other
 * rows, the batch, the time chunk, the thread count or the CPU. A BLAS makes
 * no such promise (OpenBLAS's Haswell and Zen sgemm kernels give a row other
 * bits at other positions within a 12-row panel). */
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_ops.h"
#include "cpu_vec.h"

#define VEC MST_VEC
#define MR 6                 /* rows of a micro-tile: 6 x 2 vectors of accumulators */
#define NR (2 * VEC)         /* columns of a micro-tile */
#define KC 256               /* k steps per pass: a KC x NR strip of w stays in L1 (L2 at VEC 16) */
#define MB 96                /* rows of a task: their x block stays in L2 across strips */
#define NB 256               /* columns of a task */

typedef mst_vf vf;

typedef struct {
    const float *x, *w, *b;
    float *y;
    int K, N;
} gemm;

/* A strip of w: rows [k0, k0+kc), columns [n0, n0+NR), copied contiguous
 * (NR floats a row) so that the micro-tiles walk it without page strides. */
typedef struct {
    float w[KC * NR];
    int k0, kc, n0, nc;
} strip;

/* Micro-tile rows [m, m+mr) x the strip's columns [c, c + nv*VEC): the
 * partial sums come from y (or start at the bias when k0 == 0) and go back to
 * y. Inlined with constant mr and nv, so the accumulators live in registers. */
MST_INLINE void micro(const gemm *g, const strip *p, long m, int c, const int mr, const int nv)
{
    vf acc[MR][2];
    int n = p->n0 + c;
    float *y = g->y + m * g->N + n;
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            acc[r][v] = p->k0 > 0 ? *(const vf *)(y + r * g->N + v * VEC)
                                  : (g->b ? *(const vf *)(g->b + n + v * VEC) : (vf){0});
    const float *x = g->x + m * g->K + p->k0, *w = p->w + c;
    for (int k = 0; k < p->kc; k++, w += NR) {
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            vf wv = *(const vf *)(w + v * VEC);
#pragma GCC unroll 8
            for (int r = 0; r < mr; r++) acc[r][v] = acc[r][v] + x[(long)r * g->K + k] * wv;
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) *(vf *)(y + r * g->N + v * VEC) = acc[r][v];
}

/* The same recurrence one column at a time, for the last nc % VEC columns. */
MST_INLINE void micro_scalar(const gemm *g, const strip *p, long m, int mr, int c)
{
    int n = p->n0 + c;
    for (int r = 0; r < mr; r++) {
        const float *x = g->x + (m + r) * g->K + p->k0;
        float acc = p->k0 > 0 ? g->y[(m + r) * g->N + n] : (g->b ? g->b[n] : 0.0f);
        for (int k = 0; k < p->kc; k++) acc = acc + x[k] * p->w[k * NR + c];
        g->y[(m + r) * g->N + n] = acc;
    }
}

#define MICRO_ROWS(nv)                                                                                                 \
    switch (mr) {                                                                                                      \
    case 6: micro(g, p, m, c, 6, nv); break;                                                                           \
    case 5: micro(g, p, m, c, 5, nv); break;                                                                           \
    case 4: micro(g, p, m, c, 4, nv); break;                                                                           \
    case 3: micro(g, p, m, c, 3, nv); break;                                                                           \
    case 2: micro(g, p, m, c, 2, nv); break;                                                                           \
    default: micro(g, p, m, c, 1, nv); break;                                                                          \
    }

/* The strip's columns for rows [m, m+mr): two vectors, one vector, then
 * single columns. */
MST_INLINE void micro_row(const gemm *g, const strip *p, long m, int mr)
{
    int c = 0;
    for (; c + NR <= p->nc; c += NR) MICRO_ROWS(2)
    for (; c + VEC <= p->nc; c += VEC) MICRO_ROWS(1)
    for (; c < p->nc; c++) micro_scalar(g, p, m, mr, c);
}

MST_INLINE void pack(const gemm *g, strip *p)
{
    for (int k = 0; k < p->kc; k++)
        memcpy(p->w + k * NR, g->w + (long)(p->k0 + k) * g->N + p->n0, sizeof(float) * (size_t)p->nc);
}

/* One task: rows [m0, m1) x columns [n0, n1), all of k. */
MST_CPU_CLONES static void task(const gemm *g, long m0, long m1, int n0, int n1)
{
    strip p;
    for (p.k0 = 0; p.k0 < g->K; p.k0 += KC) {
        p.kc = g->K - p.k0 < KC ? g->K - p.k0 : KC;
        for (p.n0 = n0; p.n0 < n1; p.n0 += NR) {
            p.nc = n1 - p.n0 < NR ? n1 - p.n0 : NR;
            pack(g, &p);
            for (long m = m0; m < m1; m += MR) micro_row(g, &p, m, m1 - m < MR ? (int)(m1 - m) : MR);
        }
    }
}

mst_status mst_cpu_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N,
                          float *y, mst_error *err)
{
    (void)ctx;
    (void)err;
    gemm g = {.x = x, .w = w, .b = b, .y = y, .K = K, .N = N};
    long row_tasks = (M + MB - 1) / MB, col_tasks = (N + NB - 1) / NB;
    if (K == 0) { /* no products: y is the bias */
        for (long m = 0; m < M; m++)
            for (int n = 0; n < N; n++) y[m * N + n] = b ? b[n] : 0.0f;
        return MST_OK;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < row_tasks * col_tasks; t++) {
        long m0 = t / col_tasks * MB, m1 = m0 + MB < M ? m0 + MB : M;
        int n0 = (int)(t % col_tasks) * NB, n1 = n0 + NB < N ? n0 + NB : N;
        task(&g, m0, m1, n0, n1);
    }
    return MST_OK;
}
