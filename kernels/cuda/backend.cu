/* The CUDA backend's table: device memory, copies and the context (one
 * stream, one cuBLAS handle per engine). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"

static mst_status cuda_alloc(void *ctx, size_t bytes, void **out, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 64);
    if (e == cudaSuccess) mst_alloc_log_add(&c->mem, *out, bytes);
    if (e != cudaSuccess) {
        *out = NULL;
        cudaGetLastError(); /* clear the sticky allocation error */
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        return mst_fail(err, MST_ERR_NOMEM, "%s: cannot allocate %zu bytes of device memory (%zu of %zu free)", c->name,
                        bytes, free_b, total);
    }
    return MST_OK;
}

static void cuda_release(void *ctx, void *p)
{
    mst_cuda *c = (mst_cuda *)ctx;
    mst_alloc_log_remove(&c->mem, p);
    for (int i = 0; i < c->num_halves; i++) /* its fp16/bf16 copy, if it was a weight */
        if (c->halves[i].src == p) {
            cudaFree(c->halves[i].half);
            c->halves[i--] = c->halves[--c->num_halves];
        }
    cudaFree(p);
}

static mst_status cuda_timer_mark(void *ctx, int family, int end, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    if (end) {
        CUDA_TRY(cudaEventRecord(c->timers[c->open[family]].end, c->stream), err);
        return MST_OK;
    }
    if (c->num_timers == c->cap_timers) {
        int cap = c->cap_timers ? 2 * c->cap_timers : 256;
        mst_cuda_timer *t = (mst_cuda_timer *)realloc(c->timers, sizeof(*t) * (size_t)cap);
        if (!t) return mst_fail(err, MST_ERR_NOMEM, "out of memory for timers");
        c->timers = t;
        for (int i = c->cap_timers; i < cap; i++) { /* cap_timers counts events that exist */
            CUDA_TRY(cudaEventCreate(&t[i].begin), err);
            if (cudaEventCreate(&t[i].end) != cudaSuccess) {
                cudaEventDestroy(t[i].begin);
                return mst_fail(err, MST_ERR_DEVICE, "CUDA: cannot create timing events");
            }
            c->cap_timers = i + 1;
        }
    }
    c->open[family] = c->num_timers;
    c->timers[c->num_timers].family = family;
    CUDA_TRY(cudaEventRecord(c->timers[c->num_timers++].begin, c->stream), err);
    return MST_OK;
}

static mst_status cuda_timer_collect(void *ctx, double *ms, int families, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    CUDA_TRY(cudaStreamSynchronize(c->stream), err);
    for (int i = 0; i < c->num_timers; i++) {
        float t = 0;
        CUDA_TRY(cudaEventElapsedTime(&t, c->timers[i].begin, c->timers[i].end), err);
        if (c->timers[i].family < families) ms[c->timers[i].family] += t;
    }
    c->num_timers = 0;
    return MST_OK;
}

static mst_cuda_graph *find_graph(mst_cuda *c, long key, mst_error *err)
{
    for (int i = 0; i < c->num_graphs; i++)
        if (c->graphs[i].key == key) return &c->graphs[i];
    if (c->num_graphs == c->cap_graphs) {
        int cap = c->cap_graphs ? 2 * c->cap_graphs : 8;
        mst_cuda_graph *g = (mst_cuda_graph *)realloc(c->graphs, sizeof(*g) * (size_t)cap);
        if (!g) {
            mst_fail(err, MST_ERR_NOMEM, "out of memory for CUDA graphs");
            return NULL;
        }
        c->graphs = g;
        c->cap_graphs = cap;
    }
    mst_cuda_graph *g = &c->graphs[c->num_graphs++];
    g->key = key, g->runs = 0, g->exec = NULL;
    return g;
}

/* Captures fn's launches on the stream into an executable graph. */
static mst_status capture(mst_cuda *c, mst_cuda_graph *g, mst_status (*fn)(void *, mst_error *), void *arg,
                          mst_error *err)
{
    cudaGraph_t graph = NULL;
    CUDA_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), err);
    mst_status r = fn(arg, err);
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    if (r != MST_OK) {
        if (graph) cudaGraphDestroy(graph);
        return r;
    }
    if (e != cudaSuccess)
        return mst_fail(err, MST_ERR_DEVICE, "CUDA: capturing a time chunk: %s", cudaGetErrorString(e));
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return mst_fail(err, MST_ERR_DEVICE, "CUDA: instantiating a time chunk: %s", cudaGetErrorString(e));
    return MST_OK;
}

static mst_status cuda_graph_run(void *ctx, long key, mst_status (*fn)(void *, mst_error *), void *arg, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    mst_cuda_graph *g = find_graph(c, key, err);
    if (!g) return MST_ERR_NOMEM;
    if (g->runs == 0) { /* first time: scratch and weight copies are made outside any capture */
        g->runs = 1;
        return fn(arg, err);
    }
    if (!g->exec) MST_TRY(capture(c, g, fn, arg, err));
    CUDA_TRY(cudaGraphLaunch(g->exec, c->stream), err);
    return MST_OK;
}

static size_t cuda_peak_bytes(void *ctx)
{
    mst_cuda *c = (mst_cuda *)ctx;
    size_t copies = 0; /* the fp16/bf16 weight copies, kept as long as their weights */
    for (int i = 0; i < c->num_halves; i++) copies += 2 * (size_t)c->halves[i].rows * (size_t)c->halves[i].cols;
    return c->mem.peak + c->operand_bytes + c->z_bytes + copies;
}

/* What the operand and z scratch grow to, and the fp16/bf16 weight copies
 * (synapse.cu, linear.cu). */
static size_t cuda_scratch_bytes(void *ctx, const mst_gemm_op *ops, int n)
{
    mst_cuda *c = (mst_cuda *)ctx;
    int half = c->precision != MST_PRECISION_FP32, fused = half && c->fused_synapse;
    size_t operand = 0, z = 0, copies = 0, elem = half ? 2 : 4;
    for (int i = 0; i < n; i++) {
        size_t rows = (size_t)ops[i].rows, K = (size_t)ops[i].K, N = (size_t)ops[i].N, need = 0;
        if (ops[i].spikes && half && c->wgmma_synapse) {
            copies += mst_cuda_wgmma_weight_bytes((int)K, (int)N);
            continue;
        }
        if (ops[i].spikes && fused) {
            copies += 2 * ((K + 15) / 16 * 16) * ((N + 63) / 64 * 64);
            continue;
        }
        if (ops[i].spikes) {
            need = elem * rows * (size_t)mst_cuda_unpack_ld((int)K, elem);
            z = 4 * rows * N > z ? 4 * rows * N : z;
        } else if (half) {
            need = 2 * rows * K;
        }
        operand = need > operand ? need : operand;
        if (half) copies += 2 * K * N;
    }
    return operand + z + copies;
}

static mst_status cuda_free_bytes(void *ctx, size_t *bytes, mst_error *err)
{
    (void)ctx;
    size_t total = 0;
    CUDA_TRY(cudaMemGetInfo(bytes, &total), err);
    return MST_OK;
}

static mst_status cuda_host_alloc(void *ctx, size_t bytes, void **out, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    if (cudaMallocHost(out, bytes ? bytes : 64) != cudaSuccess) {
        *out = NULL;
        cudaGetLastError();
        return mst_fail(err, MST_ERR_NOMEM, "%s: cannot allocate %zu bytes of pinned host memory", c->name, bytes);
    }
    return MST_OK;
}

static void cuda_host_release(void *ctx, void *p)
{
    (void)ctx;
    cudaFreeHost(p);
}

static mst_status cuda_upload(void *ctx, void *dst, const void *src, size_t bytes, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), err);
    /* the caller may reuse src as soon as we return */
    CUDA_TRY(cudaStreamSynchronize(c->stream), err);
    return MST_OK;
}

static mst_status cuda_download(void *ctx, void *dst, const void *src, size_t bytes, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), err);
    CUDA_TRY(cudaStreamSynchronize(c->stream), err);
    return MST_OK;
}

/* Grows a scratch buffer; work queued on the device may still read the old
 * one, so the device drains first. */
mst_status mst_cuda_scratch(mst_cuda *c, void **p, size_t *have, size_t want, mst_error *err)
{
    if (want <= *have) return MST_OK;
    CUDA_TRY(cudaDeviceSynchronize(), err);
    for (int i = 0; i < c->num_graphs; i++) { /* they point at the buffer about to go */
        if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
        c->graphs[i].exec = NULL, c->graphs[i].runs = 0;
    }
    if (*p) CUDA_TRY(cudaFree(*p), err);
    *p = NULL;
    *have = 0;
    if (cudaMalloc(p, want) != cudaSuccess) {
        cudaGetLastError(); /* not sticky: later launches must not report it */
        *p = NULL;
        return mst_fail(err, MST_ERR_NOMEM, "cannot allocate %zu bytes of device scratch", want);
    }
    *have = want;
    return MST_OK;
}

static void cuda_destroy(mst_backend *b)
{
    mst_cuda *c = (mst_cuda *)b->ctx;
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    for (int i = 0; i < c->num_halves; i++) cudaFree(c->halves[i].half);
    for (int i = 0; i < c->cap_timers; i++) cudaEventDestroy(c->timers[i].begin), cudaEventDestroy(c->timers[i].end);
    free(c->timers);
    for (int i = 0; i < c->num_graphs; i++)
        if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
    free(c->graphs);
    cudaFree(c->blas_workspace);
    mst_alloc_log_free(&c->mem);
    free(c->halves);
    cudaFree(c->operand);
    cudaFree(c->z);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
    b->ctx = NULL;
}

extern "C" int mst_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

static mst_status open_device(mst_cuda *c, int device, mst_error *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return mst_fail(err, MST_ERR_DEVICE, "no usable CUDA device: %s", cudaGetErrorString(e));
    }
    if (device < 0 || device >= n)
        return mst_fail(err, MST_ERR_ARG, "CUDA device %d does not exist (%d device%s)", device, n, n == 1 ? "" : "s");
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device), err);
    CUDA_TRY(cudaSetDevice(device), err);
    CUDA_TRY(cudaDeviceGetAttribute(&c->shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), err);
    int threads_per_sm = 0;
    CUDA_TRY(cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device), err);
    c->resident_blocks = prop.multiProcessorCount * (threads_per_sm / 256 > 0 ? threads_per_sm / 256 : 1);
    MST_TRY(mst_cuda_attention_setup(c, err));
    snprintf(c->name, sizeof c->name, "cuda:%d (%.100s, sm_%d%d)", device, prop.name, prop.major, prop.minor);
    c->sms = prop.multiProcessorCount;
    if (c->wgmma_synapse && prop.major != 9) /* its code is sm_90a alone */
        return mst_fail(err, MST_ERR_UNSUPPORTED, "the wgmma synapse runs on Hopper (sm_90) only; %s: use "
                        "--fused-synapse=wmma", c->name);
    if (c->wgmma_synapse) MST_TRY(mst_cuda_wgmma_setup(c, err));
    c->device = device;
    CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), err);
    BLAS_TRY(cublasCreate(&c->blas), err);
    BLAS_TRY(cublasSetStream(c->blas, c->stream), err);
    const size_t ws = 32u << 20; /* a workspace of our own, so cuBLAS never allocates inside a captured graph */
    CUDA_TRY(cudaMalloc(&c->blas_workspace, ws), err);
    BLAS_TRY(cublasSetWorkspace(c->blas, c->blas_workspace, ws), err);
    /* fp32 is the parity mode: no TF32 or other reduced-precision paths */
    BLAS_TRY(cublasSetMathMode(c->blas, c->precision == MST_PRECISION_FP32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH),
             err);
    return MST_OK;
}

extern "C" mst_status mst_backend_cuda(mst_backend *b, int device, mst_precision precision, unsigned flags,
                                       mst_error *err)
{
    memset(b, 0, sizeof *b);
    mst_cuda *c = (mst_cuda *)calloc(1, sizeof(mst_cuda));
    if (!c) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    c->precision = precision;
    c->fused_synapse = (flags & MST_CUDA_FUSED_SYNAPSE) != 0;
    c->wgmma_synapse = (flags & MST_CUDA_WGMMA_SYNAPSE) != 0;
    b->ctx = c;
    b->destroy = cuda_destroy;
    mst_status r = open_device(c, device, err);
    if (r != MST_OK) {
        cuda_destroy(b);
        return r;
    }
    b->name = c->name;
    b->host_memory = 0;
    b->alloc = cuda_alloc;
    b->release = cuda_release;
    b->upload = cuda_upload;
    b->download = cuda_download;
    b->fill = mst_cuda_fill;
    b->host_alloc = cuda_host_alloc;
    b->host_release = cuda_host_release;
    b->timer_mark = cuda_timer_mark;
    b->timer_collect = cuda_timer_collect;
    b->peak_bytes = cuda_peak_bytes;
    b->scratch_bytes = cuda_scratch_bytes;
    b->free_bytes = cuda_free_bytes;
    b->peak_flops = mst_cuda_peak_flops;
    b->graph_run = cuda_graph_run;
    b->patchify = mst_cuda_patchify;
    b->linear = mst_cuda_linear;
    b->synapse_if = mst_cuda_synapse_if;
    b->if_scan = mst_cuda_if_scan;
    b->qcfs = mst_cuda_qcfs;
    b->window_attention = mst_cuda_window_attention;
    b->mask_spikes = mst_cuda_mask_spikes;
    b->residual = mst_cuda_residual;
    b->patch_merge = mst_cuda_patch_merge;
    b->ln_mean = mst_cuda_ln_mean;
    return MST_OK;
}
