/* Spike-fed synapses and the IF site they feed: the packed spikes of the
 * chunk are expanded to GEMM operands (0/1 is exact in every float format),
 * one GEMM over all steps x rows, then the IF scan over the potentials.
 * (design.md's next step, the scan in the GEMM epilogue, is not done yet.) */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../common/mst_bits.h"
#include "cuda_backend.h"
#include "if_scan.cuh"

template <typename T> __device__ __forceinline__ T spike_value(int bit);
template <> __device__ __forceinline__ float spike_value<float>(int bit) { return bit ? 1.0f : 0.0f; }
template <> __device__ __forceinline__ __half spike_value<__half>(int bit) { return __float2half_rn(bit ? 1.0f : 0.0f); }
template <> __device__ __forceinline__ __nv_bfloat16 spike_value<__nv_bfloat16>(int bit)
{
    return __float2bfloat16_rn(bit ? 1.0f : 0.0f);
}

template <typename T> __global__ void unpack_kernel(const uint64_t *x, long rows, int K, T *out)
{
    int W = mst_spike_words(K);
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < rows * K; i += (long)gridDim.x * blockDim.x) {
        long row = i / K;
        int k = (int)(i % K);
        out[i] = spike_value<T>(mst_bit(x + row * W, k));
    }
}

static mst_status unpack(mst_cuda *c, const uint64_t *x, long rows, int K, mst_error *err)
{
    size_t elem = c->precision == MST_PRECISION_FP32 ? sizeof(float) : sizeof(__half);
    MST_TRY(mst_cuda_scratch(c, &c->operand, &c->operand_bytes, elem * (size_t)rows * K, err));
    long n = rows * K;
    unsigned blocks = mst_cuda_blocks(n, 256);
    blocks = blocks < 65535 * 16 ? blocks : 65535 * 16;
    if (c->precision == MST_PRECISION_FP32)
        MST_LAUNCH(unpack_kernel<float>, blocks, 256, 0, c->stream)(x, rows, K, (float *)c->operand);
    else if (c->precision == MST_PRECISION_FP16)
        MST_LAUNCH(unpack_kernel<__half>, blocks, 256, 0, c->stream)(x, rows, K, (__half *)c->operand);
    else
        MST_LAUNCH(unpack_kernel<__nv_bfloat16>, blocks, 256, 0, c->stream)(x, rows, K, (__nv_bfloat16 *)c->operand);
    LAUNCH_TRY("unpack_kernel", err);
    return MST_OK;
}

mst_status mst_cuda_synapse_if(void *ctx, const uint64_t *x, int steps, long R, int K, const float *w, const float *b,
                               int N, float *v, uint64_t *bits, float *out, float out_scale, uint64_t *count,
                               mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    long rows = (long)steps * R;
    MST_TRY(unpack(c, x, rows, K, err));
    MST_TRY(mst_cuda_scratch(c, (void **)&c->z, &c->z_bytes, sizeof(float) * (size_t)rows * N, err));
    /* z = spikes . w; the scan adds the bias as it reads z, which spares a
       pass that fills z with it and the GEMM's read of z (beta = 0) */
    MST_TRY(mst_cuda_gemm(c, c->operand, c->precision != MST_PRECISION_FP32, rows, K, w, N, c->z, 0, err));
    mst_cuda_if p = {};
    p.in = c->z, p.in_tstride = R * N, p.bias = b, p.C = N, p.v = v, p.out = out, p.out_scale = out_scale;
    p.bits = (uint32_t *)bits, p.count = mst_cuda_counter(count), p.steps = steps, p.R = R * N;
    return mst_cuda_if_launch(c, &p, err);
}
