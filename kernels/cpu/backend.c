#include <stdlib.h>
#include <string.h>

#include "../../host/error.h"
#include "cpu_backend.h"
#include "cpu_ops.h"

static mst_status cpu_alloc(void *ctx, size_t bytes, void **out, mst_error *err)
{
    (void)ctx;
    size_t rounded = (bytes + 63) / 64 * 64;
    *out = aligned_alloc(64, rounded ? rounded : 64);
    if (!*out) return mst_fail(err, MST_ERR_NOMEM, "out of memory: %zu bytes of host memory", bytes);
    return MST_OK;
}

static void cpu_release(void *ctx, void *p)
{
    (void)ctx;
    free(p);
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
    float *p = realloc(cpu->scratch, sizeof(float) * n);
    if (!p) return mst_fail(err, MST_ERR_NOMEM, "out of memory: %zu floats of scratch", n);
    cpu->scratch = p;
    cpu->scratch_n = n;
    return MST_OK;
}

static void cpu_destroy(mst_backend *b)
{
    mst_cpu *cpu = b->ctx;
    if (cpu) free(cpu->scratch);
    free(cpu);
    b->ctx = NULL;
}

mst_status mst_backend_cpu(mst_backend *b, mst_error *err)
{
    memset(b, 0, sizeof *b);
    b->ctx = calloc(1, sizeof(mst_cpu));
    if (!b->ctx) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    b->name = "cpu";
    b->host_memory = 1;
    b->destroy = cpu_destroy;
    b->alloc = cpu_alloc;
    b->release = cpu_release;
    b->upload = cpu_copy;
    b->download = cpu_copy;
    b->fill = cpu_fill;
    b->host_alloc = cpu_alloc;
    b->host_release = cpu_release;
    b->patchify = mst_cpu_patchify;
    b->linear = mst_cpu_linear;
    b->synapse_if = mst_cpu_synapse_if;
    b->if_scan = mst_cpu_if_scan;
    b->qcfs = mst_cpu_qcfs;
    b->window_attention = mst_cpu_window_attention;
    b->residual = mst_cpu_residual;
    b->patch_merge = mst_cpu_patch_merge;
    b->ln_mean = mst_cpu_ln_mean;
    return MST_OK;
}
