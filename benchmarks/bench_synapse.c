/* The CPU backend's spike-fed synapse (kernels/cpu/synapse.c, fused with its
 * IF site) on the shapes the engine gives it, against the rate this machine
 * adds rows held in L1 (the floor `mst bench` holds it to), in the same run.
 * Spikes are drawn at the firing rates a calibrated Swin-T shows at each
 * layer's input; one chunk of 8 steps, 2 images (Swin-T) or 16 (tiny).
 *
 * Then the same number of spikes per row on panels of growing K: the adds
 * per row are equal, only the bytes the rows are gathered from grow. A
 * panel (K x the synapse's column block) that fits in L1 against one that
 * must come from L2 shows what the synapse's memory costs it. The floor
 * is measured before the rows and again after them.
 *
 *   build/bench_synapse [REPS]
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "kernels/backend.h"
#include "kernels/common/mst_bits.h"
#include "kernels/cpu/cpu_vec.h"

typedef struct {
    const char *what;
    long R; /* tokens x images */
    int K, N;
    double f; /* input firing rate */
} shape;

static const shape shapes[] = {
    {"swin-t stage 1 qkv", 2 * 3136, 96, 288, 0.14},    {"swin-t stage 1 fc2", 2 * 3136, 384, 96, 0.18},
    {"swin-t stage 3 qkv", 2 * 196, 384, 1152, 0.16},   {"swin-t stage 3 fc1", 2 * 196, 384, 1536, 0.16},
    {"swin-t stage 3 fc2", 2 * 196, 1536, 384, 0.18},   {"swin-t stage 4 fc2", 2 * 49, 3072, 768, 0.19},
    {"tiny stage 1 qkv", 16 * 256, 24, 72, 0.15},       {"tiny stage 1 fc1", 16 * 256, 24, 96, 0.15},
    {"tiny stage 2 fc2", 16 * 64, 192, 48, 0.17},
    /* ~96 spikes per row each: the panel grows, the adds do not (at K 96
       every input fires, so every row also has the same count) */
    {"96 spikes/row, K 96", 196, 96, 1152, 1.0},        {"96 spikes/row, K 192", 196, 192, 1152, 0.5},
    {"96 spikes/row, K 384", 196, 384, 1152, 0.25},     {"96 spikes/row, K 1536", 196, 1536, 1152, 0.0625},
};

#define STEPS 8

/* Best seconds of `reps` calls after one warm-up (which packs the weights). */
static double best(const mst_backend *be, mst_synapse_args *a, int reps)
{
    double t_best = 1e30;
    for (int r = 0; r <= reps; r++) {
        mst_error err = {0};
        double t0 = bench_now();
        if (be->synapse_if(be->ctx, a, &err) != MST_OK) {
            fprintf(stderr, "bench_synapse: %s\n", err.msg);
            exit(1);
        }
        double dt = bench_now() - t0;
        if (r > 0 && dt < t_best) t_best = dt;
    }
    return t_best;
}

int main(int argc, char **argv)
{
    int reps = bench_reps(argc, argv, "bench_synapse");
    mst_backend be;
    mst_error err = {0};
    double floor[MST_NUM_OP_KINDS];
    if (mst_backend_cpu(&be, &err) != MST_OK || be.op_floors(be.ctx, floor, MST_NUM_OP_KINDS, &err) != MST_OK) {
        fprintf(stderr, "bench_synapse: %s\n", err.msg);
        return 1;
    }
    int col_block = MST_ACC_VECS * MST_VEC;
    enum { n = sizeof shapes / sizeof shapes[0] };
    double rate[n], per_row[n];
    for (size_t i = 0; i < n; i++) {
        const shape *s = &shapes[i];
        int WK = mst_spike_words(s->K), WN = mst_spike_words(s->N);
        long rows = STEPS * s->R;
        uint64_t *x = calloc((size_t)(rows * WK), sizeof *x), *bits = calloc((size_t)(rows * WN), sizeof *bits);
        float *w = malloc(sizeof(float) * (size_t)s->K * s->N), *b = malloc(sizeof(float) * (size_t)s->N);
        float *v = malloc(sizeof(float) * (size_t)(s->R * s->N));
        if (!x || !bits || !w || !b || !v) {
            fprintf(stderr, "bench_synapse: out of memory for %s\n", s->what);
            return 1;
        }
        unsigned seed = 11u + (unsigned)i;
        for (long k = 0; k < (long)s->K * s->N; k++) w[k] = ((float)rand_r(&seed) / (float)RAND_MAX - 0.5f) * 0.1f;
        for (int n = 0; n < s->N; n++) b[n] = 0.01f, v[n] = 0.5f;
        for (long r = 1; r < s->R; r++)
            for (int n = 0; n < s->N; n++) v[r * s->N + n] = 0.5f;
        long spikes = 0;
        for (long r = 0; r < rows; r++)
            for (int k = 0; k < s->K; k++)
                if ((double)rand_r(&seed) / RAND_MAX < s->f) x[r * WK + k / 64] |= UINT64_C(1) << (k % 64), spikes++;
        mst_synapse_args a = {.x = x, .steps = STEPS, .R = s->R, .K = s->K, .N = s->N, .w = w, .b = b,
                              .w_fixed = 1, .v = v, .bits = bits};
        rate[i] = (double)spikes * s->N / best(&be, &a, reps);
        per_row[i] = (double)spikes / rows;
        free(x), free(bits), free(w), free(b), free(v);
    }
    /* the floor again: on a machine whose speed drifts, the two bound what the rows saw */
    double after[MST_NUM_OP_KINDS];
    if (be.op_floors(be.ctx, after, MST_NUM_OP_KINDS, &err) != MST_OK) {
        fprintf(stderr, "bench_synapse: %s\n", err.msg);
        return 1;
    }
    double top = after[MST_OP_SYNAPSE] > floor[MST_OP_SYNAPSE] ? after[MST_OP_SYNAPSE] : floor[MST_OP_SYNAPSE];
    printf("%d OpenMP threads, best of %d, %d steps; floor (rows added from L1) %.1f G adds/s before the rows, "
           "%.1f after (%% of the higher); panels of %d columns\n", omp_get_max_threads(), reps, STEPS,
           floor[MST_OP_SYNAPSE] * 1e-9, after[MST_OP_SYNAPSE] * 1e-9, col_block);
    printf("%-26s %6s %5s %5s %6s %11s %10s %10s %8s\n", "shape", "R", "K", "N", "f", "spikes/row", "panel KiB",
           "G adds/s", "floor %");
    for (size_t i = 0; i < n; i++) {
        const shape *s = &shapes[i];
        printf("%-26s %6ld %5d %5d %6.3f %11.1f %10.1f %10.2f %8.1f\n", s->what, s->R, s->K, s->N, s->f, per_row[i],
               (double)s->K * col_block * sizeof(float) / 1024, rate[i] * 1e-9, 100 * rate[i] / top);
    }
    be.destroy(&be);
    return 0;
}
