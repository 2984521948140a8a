/* The CUDA backend's context and the checks every CUDA call and launch goes
 * through. Each op family lives in its own .cu file behind the backend table
 * (kernels/backend.h); none of them keeps globals: the stream, the cuBLAS
 * handle and the scratch buffers belong to the context. */
#ifndef MST_CUDA_BACKEND_H
#define MST_CUDA_BACKEND_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../alloc_log.h"
#include "../backend.h"

extern "C" {
#include "../../host/error.h"
}

/* How a weight copy is laid out: row-major [Kp][Np] for cuBLAS and WMMA, or
 * the wgmma synapse's tiles (synapse_wgmma.cu: each ring slot one block). */
typedef enum { MST_WEIGHT_ROWS, MST_WEIGHT_WGMMA_TILES } mst_weight_layout;

/* A weight matrix converted to the GEMM operand type of fp16/bf16 mode, made
 * the first time the weight is used; rows x cols, zero-padded past [K][N]. */
typedef struct {
    const float *src;
    void *half;
    int rows, cols;
    mst_weight_layout layout;
} mst_cuda_half_weight;

/* One timed op: events around it on the stream. */
typedef struct {
    int family;
    cudaEvent_t begin, end;
} mst_cuda_timer;

/* A chunk's captured work, replayed for every chunk of the same shape. */
typedef struct {
    long key;
    int runs;               /* 1: ran once uncaptured; 2: captured */
    cudaGraphExec_t exec;
} mst_cuda_graph;

typedef struct {
    int device;
    mst_precision precision;
    int fused_synapse;      /* fp16/bf16: the synapse's GEMM and IF scan in one kernel */
    int wgmma_synapse;      /* ... on Hopper's wgmma (synapse_wgmma.cu) rather than WMMA */
    int sms;                /* streaming multiprocessors */
    cudaStream_t stream;
    cublasHandle_t blas;
    void *operand;          /* unpacked spikes or converted inputs of a GEMM */
    size_t operand_bytes;
    float *z;               /* GEMM output before the IF scan of synapse_if */
    size_t z_bytes;
    mst_cuda_half_weight *halves;
    int num_halves, cap_halves;
    mst_alloc_log mem;      /* device bytes held, for the peak */
    mst_cuda_graph *graphs;
    int num_graphs, cap_graphs;
    void *blas_workspace;   /* cuBLAS must not allocate while a graph is captured */
    int shared_optin;       /* the device's shared memory per block, opted in */
    int resident_blocks;    /* blocks of 256 threads that fill every SM once */
    mst_cuda_timer *timers; /* recorded since the last collect; events pooled */
    int num_timers, cap_timers, open[MST_NUM_FAMILIES];
    char name[160];
} mst_cuda;

#define CUDA_TRY(call, err)                                                                                   \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess)                                                                                \
            return mst_fail((err), MST_ERR_DEVICE, "CUDA: %s: %s (%s:%d)", #call, cudaGetErrorString(e_),    \
                            __FILE__, __LINE__);                                                              \
    } while (0)

/* After every kernel launch: launch-configuration errors surface here. */
#define LAUNCH_TRY(what, err)                                                                                 \
    do {                                                                                                      \
        cudaError_t e_ = cudaGetLastError();                                                                  \
        if (e_ != cudaSuccess)                                                                                \
            return mst_fail((err), MST_ERR_DEVICE, "CUDA: launching %s: %s", (what), cudaGetErrorString(e_)); \
    } while (0)

#define BLAS_TRY(call, err)                                                                                   \
    do {                                                                                                      \
        cublasStatus_t s_ = (call);                                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                      \
            return mst_fail((err), MST_ERR_DEVICE, "cuBLAS: %s: %s", #call, cublasGetStatusString(s_));       \
    } while (0)

/* Launches and dynamic shared memory go through these two macros so that
 * tests/cuda_emu can run the same kernels on the CPU. */
#ifndef MST_LAUNCH
#include <mma.h>
#define MST_LAUNCH(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#define MST_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

#define MST_TRY(x)                           \
    do {                                     \
        mst_status r_ = (x);                 \
        if (r_ != MST_OK) return r_;         \
    } while (0)

/* The bit pattern of 1.0 in each GEMM operand type: spike operands (0 or 1)
 * are written as raw bits (synapse.cu's unpack, synapse_wgmma.cu's A
 * fragments). */
template <typename T> struct mst_operand_one;
template <> struct mst_operand_one<float> { static constexpr uint32_t bits = 0x3f800000u; };
template <> struct mst_operand_one<__half> { static constexpr uint32_t bits = 0x3c00u; };
template <> struct mst_operand_one<__nv_bfloat16> { static constexpr uint32_t bits = 0x3f80u; };

/* Row stride of an unpacked spike operand: K rounded up to whole 16-byte
 * vectors of elem-byte elements (the unpack stores 16 bytes at a time). */
static inline int mst_cuda_unpack_ld(int K, size_t elem)
{
    int per = (int)(16 / elem);
    return (K + per - 1) / per * per;
}

/* Blocks for n items (grid-stride kernels): at least one, so that empty
 * work is a valid launch, and capped. */
static inline unsigned mst_cuda_blocks(long n, int threads)
{
    long b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : (b > 65535L * 16 ? 65535L * 16 : b));
}

/* Scratch that grows to the largest request and is reused (stream order).
 * Growing it drops the captured graphs, which point at the old buffer. */
mst_status mst_cuda_scratch(mst_cuda *c, void **p, size_t *have, size_t want, mst_error *err);
/* y[M][N] = op(x)[M][K] w[K][N] (+ y when accumulate), in the context's
 * precision; x's rows are ldx elements apart; x_half: x is already in the
 * operand type (fp16/bf16 modes). */
mst_status mst_cuda_gemm(mst_cuda *c, const void *x, int x_half, long M, int K, int ldx, const float *w, int N,
                         float *y, int accumulate, mst_error *err);
/* The fp16/bf16 copy of weight w [K][N] as a [Kp][Np] matrix (Kp >= K,
 * Np >= N, zero-padded) in the given layout, made on first use and kept
 * with the context. */
mst_status mst_cuda_half_weight_get(mst_cuda *c, const float *w, int K, int N, int Kp, int Np, mst_weight_layout layout,
                                    const void **out, mst_error *err);
/* Spike counters live in device memory (the engine allocates them through
 * the table), so counting never waits for the stream. */
__host__ __device__ static inline unsigned long long *mst_cuda_counter(uint64_t *p) { return (unsigned long long *)p; }

mst_status mst_cuda_patchify(void *ctx, const float *img, int B, int cin, int res, int P, float *out, mst_error *err);
mst_status mst_cuda_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N, float *y,
                           mst_error *err);
/* The synapse on wgmma (fp16/bf16, Hopper): the same contract as synapse_if. */
mst_status mst_cuda_synapse_wgmma(mst_cuda *c, const mst_synapse_args *a, mst_error *err);
/* Once per context that uses it: the wgmma synapse's shared memory. */
mst_status mst_cuda_wgmma_setup(mst_cuda *c, mst_error *err);
size_t mst_cuda_wgmma_weight_bytes(int K, int N);
mst_status mst_cuda_synapse_if(void *ctx, const mst_synapse_args *a, mst_error *err);
mst_status mst_cuda_if_scan(void *ctx, const mst_if_args *a, mst_error *err);
mst_status mst_cuda_qcfs(void *ctx, const mst_if_args *a, mst_error *err);
mst_status mst_cuda_window_attention(void *ctx, const mst_attn_args *a, mst_error *err);
mst_status mst_cuda_mask_spikes(void *ctx, const mst_mask_args *a, mst_error *err);
/* Once per context: lets the attention kernel use all the shared memory the
 * device offers (the attribute is the device's, so one fixed value for all
 * contexts; never set inside a graph capture). */
mst_status mst_cuda_attention_setup(mst_cuda *c, mst_error *err);
mst_status mst_cuda_residual(void *ctx, float *x, const float *s, float lam, const float *scale, const float *shift,
                             int C, long n, mst_error *err);
mst_status mst_cuda_patch_merge(void *ctx, const float *x, long rows, int res, int C, float *out, mst_error *err);
mst_status mst_cuda_ln_mean(void *ctx, const float *x, long rows, int N, int C, const float *w, const float *b,
                            float *out, mst_error *err);
mst_status mst_cuda_fill(void *ctx, float *p, float value, size_t n, mst_error *err);
mst_status mst_cuda_peak_flops(void *ctx, double *flops, mst_error *err);

#endif
