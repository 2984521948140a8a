/* The CPU backend's analog GEMM (kernels/cpu/linear.c: a fixed summation
 * order per output element) beside OpenBLAS's sgemm on the same operands, in
 * the same run, on the shapes the engine gives it: Swin-T's patch embedding,
 * patch-merge reductions and head, and the shipped model's. Both on every
 * OpenMP thread; FLOPs = 2 M K N; best of the timed repetitions. Two floors:
 * OpenBLAS on a 2048 x 1024 x 1024 product (what `mst bench` divides by), and
 * the rate at which this CPU's vectors do mst's arithmetic at all (a product,
 * then an add: the order it fixes rules out FMA), with the operands in
 * registers.
 *
 *   build/bench_linear [REPS]
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_vec.h"

typedef struct {
    const char *what;
    long M;
    int K, N;
} shape;

/* batch 8 and a time chunk of 8 steps, as `mst bench` runs */
static const shape shapes[] = {
    {"swin-t patch_embed (8 images)", 8 * 3136, 48, 96},
    {"swin-t merge 1 (8x8 image-steps)", 64 * 784, 384, 192},
    {"swin-t merge 2", 64 * 196, 768, 384},
    {"swin-t merge 3", 64 * 49, 1536, 768},
    {"swin-t head", 64, 768, 1000},
    {"fmnist patch_embed (8 images)", 8 * 64, 16, 64},
    {"fmnist merge 1 (8x8 image-steps)", 64 * 16, 256, 128},
    {"fmnist head", 64, 128, 10},
    {"floor shape", 2048, 1024, 1024},
};

/* acc = acc + x * w on 12 independent vectors per thread, all threads. The
 * asm barrier keeps x * w from being hoisted out of the loop (where AVX holds
 * the vector in one register; elsewhere there is nothing to measure). */
static double muladd_peak(void)
{
#ifdef __AVX__
    long iters = 20000000;
    double t0 = bench_now(), sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        mst_vf acc[12], w0 = {0}, w1 = {0};
        const float x[6] = {1e-7f, 2e-7f, 3e-7f, 4e-7f, 5e-7f, 6e-7f}; /* 12 distinct products, as in a micro-tile */
        w0 += 1.0f, w1 += 0.5f;
        for (int i = 0; i < 12; i++) acc[i] = (mst_vf){0};
        for (long k = 0; k < iters; k++) {
            __asm__("" : "+x"(w0), "+x"(w1));
#pragma GCC unroll 6
            for (int i = 0; i < 6; i++)
                acc[2 * i] = acc[2 * i] + x[i] * w0, acc[2 * i + 1] = acc[2 * i + 1] + x[i] * w1;
        }
        for (int i = 0; i < 12; i++) sink += acc[i][0];
    }
    double dt = bench_now() - t0;
    return sink > 0 ? 2.0 * 12 * MST_VEC * iters * omp_get_max_threads() / dt : 0;
#else
    return 0;
#endif
}

static void fill(float *p, long n, unsigned *s)
{
    for (long i = 0; i < n; i++) p[i] = (float)rand_r(s) / (float)RAND_MAX - 0.5f;
}

/* Best seconds of `reps` calls after one warm-up; which = 0: mst, 1: OpenBLAS. */
static double best(const mst_backend *be, int which, const shape *s, const float *x, const float *w, const float *b,
                   float *y, int reps)
{
    double t_best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = bench_now();
        if (which == 0) {
            mst_error err = {0};
            if (be->linear(be->ctx, x, s->M, s->K, w, b, s->N, y, &err) != MST_OK) {
                fprintf(stderr, "bench_linear: %s\n", err.msg);
                exit(1);
            }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->M, s->N, s->K, 1.0f, x, s->K, w, s->N, 0.0f,
                        y, s->N);
        }
        double dt = bench_now() - t0;
        if (r > 0 && dt < t_best) t_best = dt;
    }
    return t_best;
}

int main(int argc, char **argv)
{
    int reps = bench_reps(argc, argv, "bench_linear");
    mst_backend be;
    mst_error err = {0};
    if (mst_backend_cpu(&be, &err) != MST_OK) {
        fprintf(stderr, "bench_linear: %s\n", err.msg);
        return 1;
    }
    size_t n = sizeof shapes / sizeof shapes[0];
    double floor_rate = 0, peak = muladd_peak();
    printf("%d OpenMP threads, best of %d; mul+add peak of %d-float vectors: ", omp_get_max_threads(), reps, MST_VEC);
    if (peak > 0)
        printf("%.1f GFLOP/s\n", peak * 1e-9);
    else
        printf("not measured in this build (no AVX)\n");
    printf("%-34s %7s %5s %5s %12s %12s %9s %9s %9s\n", "shape", "M", "K", "N", "mst GFLOP/s", "BLAS GFLOP/s",
           "mst/BLAS", "mst/floor", "mst/peak");
    for (int pass = 0; pass < 2; pass++) /* the floor first, then every row against it */
        for (size_t i = pass ? 0 : n - 1; i < n; i++) {
            const shape *s = &shapes[i];
            unsigned seed = 7u + (unsigned)i;
            float *x = malloc(sizeof(float) * (size_t)(s->M * s->K)), *w = malloc(sizeof(float) * (size_t)s->K * s->N);
            float *b = malloc(sizeof(float) * (size_t)s->N), *y = malloc(sizeof(float) * (size_t)(s->M * s->N));
            if (!x || !w || !b || !y) {
                fprintf(stderr, "bench_linear: out of memory for %s\n", s->what);
                return 1;
            }
            fill(x, s->M * s->K, &seed), fill(w, (long)s->K * s->N, &seed), fill(b, s->N, &seed);
            double flop = 2.0 * (double)s->M * s->K * s->N;
            double mst = flop / best(&be, 0, s, x, w, b, y, reps), blas = flop / best(&be, 1, s, x, w, b, y, reps);
            if (!pass) floor_rate = blas;
            if (pass)
                printf("%-34s %7ld %5d %5d %12.2f %12.2f %9.3f %9.3f %9.3f\n", s->what, s->M, s->K, s->N, mst * 1e-9,
                       blas * 1e-9, mst / blas, mst / floor_rate, peak > 0 ? mst / peak : 0.0);
            free(x), free(w), free(b), free(y);
        }
    be.destroy(&be);
    return 0;
}
