#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../host/error.h"
#include "cpu_backend.h"
#include "cpu_ops.h"

static mst_status host_alloc(size_t bytes, void **out, mst_error *err)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    *out = aligned_alloc(64, rounded ? rounded : 64);
    if (!*out) return mst_fail(err, MST_ERR_NOMEM, "out of memory: %zu bytes of host memory", bytes);
    return MST_OK;
}

static mst_status cpu_host_alloc(void *ctx, size_t bytes, void **out, mst_error *err)
{
    (void)ctx;
    return host_alloc(bytes, out, err);
}

static void cpu_host_release(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

/* Engine buffers: counted for the peak. */
static mst_status cpu_alloc(void *ctx, size_t bytes, void **out, mst_error *err)
{
    mst_status r = host_alloc(bytes, out, err);
    if (r == MST_OK) mst_alloc_log_add(&((mst_cpu *)ctx)->mem, *out, bytes);
    return r;
}

static void cpu_release(void *ctx, void *p)
{
    mst_alloc_log_remove(&((mst_cpu *)ctx)->mem, p);
    free(p);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static mst_status cpu_timer_mark(void *ctx, int family, int end, mst_error *err)
{
    (void)err;
    mst_cpu *cpu = ctx;
    if (end)
        cpu->ms[family] += now_ms() - cpu->started[family];
    else
        cpu->started[family] = now_ms();
    return MST_OK;
}

static mst_status cpu_timer_collect(void *ctx, double *ms, int families, mst_error *err)
{
    (void)err;
    mst_cpu *cpu = ctx;
    for (int f = 0; f < families && f < MST_NUM_FAMILIES; f++) ms[f] += cpu->ms[f], cpu->ms[f] = 0;
    return MST_OK;
}

static mst_status cpu_op_work(void *ctx, mst_op_work *w, int kinds, mst_error *err)
{
    (void)err;
    mst_cpu *cpu = ctx;
    for (int k = 0; k < kinds && k < MST_NUM_OP_KINDS; k++) w[k] = cpu->work[k], cpu->work[k] = (mst_op_work){0};
    return MST_OK;
}

static size_t cpu_peak_bytes(void *ctx)
{
    mst_cpu *cpu = ctx;
    size_t kept = 0;
    for (const mst_cpu_panels *k = cpu->panels; k; k = k->next) kept += k->bytes;
    return cpu->mem.peak + sizeof(float) * cpu->scratch_n + kept;
}

/* The floor: what this machine's matrix products can do, as OpenBLAS's
 * sgemm (its kernels for this CPU, all OpenMP threads) runs a product big
 * enough to fill every core (2048 x 1024 x 1024), best of three. The engine
 * does not use it: its own GEMM (linear.c) fixes each element's summation
 * order, which no BLAS promises. */
static mst_status cpu_peak_flops(void *ctx, double *flops, mst_error *err)
{
    (void)ctx;
    long M = 2048, K = 1024, N = 1024;
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *w = malloc(sizeof(float) * (size_t)(K * N));
    float *y = malloc(sizeof(float) * (size_t)(M * N));
    if (!x || !w || !y) {
        free(x), free(w), free(y);
        return mst_fail(err, MST_ERR_NOMEM, "out of memory measuring the GEMM rate");
    }
    uint32_t s = 12345;
    for (long i = 0; i < M * K; i++) x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (long i = 0; i < K * N; i++) w[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, x, (int)K, w, (int)N,
                    0.0f, y, (int)N);
        double dt = now_ms() - t0;
        if (rep > 0 && dt < best) best = dt; /* the first call warms up */
    }
    free(x), free(w), free(y);
    *flops = 2.0 * M * K * N / (best * 1e-3);
    return MST_OK;
}

/* What the backend will hold for these ops: the largest synapse's scratch
 * (every thread's tiles) and the weight panels it keeps for the engine's
 * synapses, whose weights are fixed (synapse.c). */
static size_t cpu_scratch_bytes(void *ctx, const mst_gemm_op *ops, int n)
{
    (void)ctx;
    size_t most = 0, kept = 0;
    int threads = omp_get_max_threads();
    for (int i = 0; i < n; i++)
        if (ops[i].spikes) {
            size_t b = sizeof(float) * mst_cpu_synapse_scratch(ops[i].K, ops[i].N, threads);
            most = b > most ? b : most;
            kept += sizeof(float) * mst_cpu_synapse_panels(ops[i].K, ops[i].N);
        }
    return most + kept;
}

static mst_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, mst_error *err)
{
    (void)ctx;
    (void)err;
    memcpy(dst, src, bytes);
    return MST_OK;
}

static mst_status cpu_fill(void *ctx, float *p, float value, size_t n, mst_error *err)
{
    (void)ctx;
    (void)err;
    for (size_t i = 0; i < n; i++) p[i] = value;
    return MST_OK;
}

mst_status mst_cpu_scratch(mst_cpu *cpu, size_t n, mst_error *err)
{
    if (n <= cpu->scratch_n) return MST_OK;
    float *p = aligned_alloc(64, (sizeof(float) * n + 63) / 64 * 64); /* no call keeps scratch contents */
    if (!p) return mst_fail(err, MST_ERR_NOMEM, "out of memory: %zu floats of scratch", n);
    free(cpu->scratch);
    cpu->scratch = p;
    cpu->scratch_n = n;
    return MST_OK;
}

static void cpu_destroy(mst_backend *b)
{
    mst_cpu *cpu = b->ctx;
    if (cpu) free(cpu->scratch), mst_alloc_log_free(&cpu->mem);
    for (mst_cpu_panels *k = cpu ? cpu->panels : NULL, *next; k; k = next) next = k->next, free(k->packed), free(k);
    free(cpu);
    b->ctx = NULL;
}

static void byte_bits_init(mst_byte_bits *t)
{
    for (int v = 0; v < 256; v++)
        for (int i = 0; i < 8; i++)
            if (v >> i & 1) t->pos[v][t->count[v]++] = (uint8_t)i;
}

mst_status mst_backend_cpu(mst_backend *b, mst_error *err)
{
    memset(b, 0, sizeof *b);
    b->ctx = calloc(1, sizeof(mst_cpu));
    if (!b->ctx) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    byte_bits_init(&((mst_cpu *)b->ctx)->byte_bits);
    b->name = "cpu";
    b->host_memory = 1;
    b->destroy = cpu_destroy;
    b->alloc = cpu_alloc;
    b->release = cpu_release;
    b->upload = cpu_copy;
    b->download = cpu_copy;
    b->fill = cpu_fill;
    b->host_alloc = cpu_host_alloc;
    b->host_release = cpu_host_release;
    b->timer_mark = cpu_timer_mark;
    b->timer_collect = cpu_timer_collect;
    b->peak_bytes = cpu_peak_bytes;
    b->scratch_bytes = cpu_scratch_bytes;
    b->peak_flops = cpu_peak_flops;
    b->op_work = cpu_op_work;
    b->op_floors = mst_cpu_op_floors;
    b->patchify = mst_cpu_patchify;
    b->linear = mst_cpu_linear;
    b->synapse_if = mst_cpu_synapse_if;
    b->if_scan = mst_cpu_if_scan;
    b->qcfs = mst_cpu_qcfs;
    b->window_attention = mst_cpu_window_attention;
    b->mask_spikes = mst_cpu_mask_spikes;
    b->residual = mst_cpu_residual;
    b->patch_merge = mst_cpu_patch_merge;
    b->ln_mean = mst_cpu_ln_mean;
    return MST_OK;
}
