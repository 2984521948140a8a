/* GEMMs through cuBLAS: analog linear layers (patch embedding, patch-merge
 * reduction, head) and the matmul inside the spike-fed synapses. fp32 mode
 * runs cuBLAS in pedantic math (no TF32); fp16/bf16 modes convert operands
 * and accumulate in fp32. */
#include <climits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdlib.h>

#include "cuda_backend.h"

template <typename T> __device__ T to_operand(float x);
template <> __device__ __half to_operand<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __nv_bfloat16 to_operand<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <typename T> __global__ void convert_kernel(const float *x, T *y, long n)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        y[i] = to_operand<T>(x[i]);
}

/* Element i of the wgmma tiles: tile (n-block, k-block) of 64 x 64, in
 * it 8 x 8 core matrices of 8 channels x 8 inputs (16 bytes a channel),
 * the inputs' core matrices next to each other (synapse_wgmma.cu). */
__device__ static void tiled_position(long i, int Kp, int *k, int *j)
{
    int KS = Kp / 64, e = (int)(i % 4096), cm = e / 64, within = e % 64;
    long tile = i / 4096;
    *j = (int)(tile / KS) * 64 + cm / 8 * 8 + within / 8;
    *k = (int)(tile % KS) * 64 + cm % 8 * 8 + within % 8;
}

/* w [K][N] into y [Kp][Np] (rows, or wgmma tiles), zeros in the padding */
template <typename T>
__global__ void convert_weight_kernel(const float *w, int K, int N, int Kp, int Np, int tiled, T *y, long n)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        int k = (int)(i / Np), j = (int)(i % Np);
        if (tiled) tiled_position(i, Kp, &k, &j);
        y[i] = to_operand<T>(k < K && j < N ? w[(long)k * N + j] : 0.0f);
    }
}

static unsigned grid_for(long n) { return (unsigned)(n / 256 + 1 < 65536 ? n / 256 + 1 : 65536); }

static mst_status convert(mst_cuda *c, const float *x, void *y, long n, mst_error *err)
{
    if (c->precision == MST_PRECISION_FP16)
        MST_LAUNCH(convert_kernel<__half>, grid_for(n), 256, 0, c->stream)(x, (__half *)y, n);
    else
        MST_LAUNCH(convert_kernel<__nv_bfloat16>, grid_for(n), 256, 0, c->stream)(x, (__nv_bfloat16 *)y, n);
    LAUNCH_TRY("convert_kernel", err);
    return MST_OK;
}

mst_status mst_cuda_half_weight_get(mst_cuda *c, const float *w, int K, int N, int Kp, int Np, mst_weight_layout layout,
                                    const void **out, mst_error *err)
{
    for (int i = 0; i < c->num_halves; i++)
        if (c->halves[i].src == w && c->halves[i].rows == Kp && c->halves[i].cols == Np && c->halves[i].layout == layout) {
            *out = c->halves[i].half;
            return MST_OK;
        }
    if (c->num_halves == c->cap_halves) {
        int cap = c->cap_halves ? 2 * c->cap_halves : 64;
        mst_cuda_half_weight *h = (mst_cuda_half_weight *)realloc(c->halves, sizeof(*h) * (size_t)cap);
        if (!h) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
        c->halves = h;
        c->cap_halves = cap;
    }
    long n = (long)Kp * Np;
    void *p = NULL;
    if (cudaMalloc(&p, sizeof(__half) * (size_t)n) != cudaSuccess) {
        cudaGetLastError();
        return mst_fail(err, MST_ERR_NOMEM, "cannot allocate %zu bytes of device memory for a weight copy",
                        sizeof(__half) * (size_t)n);
    }
    c->halves[c->num_halves++] = (mst_cuda_half_weight){w, p, Kp, Np, layout};
    int tiled = layout == MST_WEIGHT_WGMMA_TILES;
    if (c->precision == MST_PRECISION_FP16)
        MST_LAUNCH(convert_weight_kernel<__half>, grid_for(n), 256, 0, c->stream)(w, K, N, Kp, Np, tiled, (__half *)p, n);
    else
        MST_LAUNCH(convert_weight_kernel<__nv_bfloat16>, grid_for(n), 256, 0, c->stream)(w, K, N, Kp, Np, tiled,
                                                                                         (__nv_bfloat16 *)p, n);
    LAUNCH_TRY("convert_weight_kernel", err);
    *out = p;
    return MST_OK;
}

mst_status mst_cuda_gemm(mst_cuda *c, const void *x, int x_half, long M, int K, int ldx, const float *w, int N,
                         float *y, int accumulate, mst_error *err)
{
    if (M > INT_MAX) return mst_fail(err, MST_ERR_UNSUPPORTED, "GEMM of %ld rows: more than cuBLAS takes", M);
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f; /* beta 0: y is not read */
    /* row-major y[M][N] = x[M][K] w[K][N] is column-major y^T = w^T x^T */
    if (c->precision == MST_PRECISION_FP32) {
        BLAS_TRY(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, N, (int)M, K, &one, w, N, (const float *)x, ldx, &beta, y,
                             N),
                 err);
        return MST_OK;
    }
    const void *xh = x, *wh = NULL;
    if (!x_half) {
        if (ldx != K) return mst_fail(err, MST_ERR_ARG, "GEMM: fp32 input with row stride %d != %d", ldx, K);
        MST_TRY(mst_cuda_scratch(c, &c->operand, &c->operand_bytes, sizeof(__half) * (size_t)M * K, err));
        MST_TRY(convert(c, (const float *)x, c->operand, M * K, err));
        xh = c->operand;
    }
    MST_TRY(mst_cuda_half_weight_get(c, w, K, N, K, N, MST_WEIGHT_ROWS, &wh, err));
    cudaDataType_t t = c->precision == MST_PRECISION_FP16 ? CUDA_R_16F : CUDA_R_16BF;
    BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, N, (int)M, K, &one, wh, t, N, xh, t, ldx, &beta, y, CUDA_R_32F,
                          N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             err);
    return MST_OK;
}

__global__ void bias_rows_kernel(float *y, long M, const float *b, int N)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < M * N; i += (long)gridDim.x * blockDim.x)
        y[i] = b ? b[i % N] : 0.0f;
}

mst_status mst_cuda_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N, float *y,
                           mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    MST_LAUNCH(bias_rows_kernel, grid_for(M * N), 256, 0, c->stream)(y, M, b, N);
    LAUNCH_TRY("bias_rows_kernel", err);
    return mst_cuda_gemm(c, x, 0, M, K, K, w, N, y, 1, err);
}

__global__ void random_bf16_kernel(__nv_bfloat16 *p, long n, uint32_t seed)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 16, h *= 0x85EBCA6Bu, h ^= h >> 13;
        p[i] = __float2bfloat16_rn((float)(h >> 8) / 16777216.0f - 0.5f);
    }
}

/* The dense bf16 floor of design.md: an 8192^3 bf16 product with fp32
 * accumulation on random data (never zeros), median of five after a warm-up,
 * in cuBLAS's default math mode (restored afterwards). */
static mst_status time_products(mst_cuda *c, const __nv_bfloat16 *a, const __nv_bfloat16 *b, float *y, int n,
                                cudaEvent_t e0, cudaEvent_t e1, float *t, mst_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    for (int rep = -1; rep < 5; rep++) {
        CUDA_TRY(cudaEventRecord(e0, c->stream), err);
        BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n,
                              &zero, y, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 err);
        CUDA_TRY(cudaEventRecord(e1, c->stream), err);
        CUDA_TRY(cudaEventSynchronize(e1), err);
        if (rep >= 0) CUDA_TRY(cudaEventElapsedTime(&t[rep], e0, e1), err);
    }
    return MST_OK;
}

mst_status mst_cuda_peak_flops(void *ctx, double *flops, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    const int n = 8192;
    __nv_bfloat16 *a = NULL, *b = NULL;
    float *y = NULL, t[5];
    cudaEvent_t e0 = NULL, e1 = NULL;
    mst_status r = MST_OK;
    if (cudaMalloc(&a, sizeof(__nv_bfloat16) * (size_t)n * n) != cudaSuccess ||
        cudaMalloc(&b, sizeof(__nv_bfloat16) * (size_t)n * n) != cudaSuccess ||
        cudaMalloc(&y, sizeof(float) * (size_t)n * n) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess) {
        cudaGetLastError();
        r = mst_fail(err, MST_ERR_NOMEM, "%s: no room for the 8192^3 product that measures the floor", c->name);
    }
    if (r == MST_OK) {
        MST_LAUNCH(random_bf16_kernel, 4096, 256, 0, c->stream)(a, (long)n * n, 1u);
        MST_LAUNCH(random_bf16_kernel, 4096, 256, 0, c->stream)(b, (long)n * n, 2u);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) r = mst_fail(err, MST_ERR_DEVICE, "CUDA: launching random_bf16_kernel: %s", cudaGetErrorString(e));
    }
    if (r == MST_OK && cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS)
        r = mst_fail(err, MST_ERR_DEVICE, "cuBLAS: cannot set the default math mode");
    if (r == MST_OK) r = time_products(c, a, b, y, n, e0, e1, t, err);
    cublasSetMathMode(c->blas, c->precision == MST_PRECISION_FP32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH);
    if (r == MST_OK) {
        for (int i = 1; i < 5; i++) /* sort for the median */
            for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
                float s = t[j];
                t[j] = t[j - 1], t[j - 1] = s;
            }
        *flops = 2.0 * n * (double)n * n / (t[2] * 1e-3);
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a), cudaFree(b), cudaFree(y);
    return r;
}
