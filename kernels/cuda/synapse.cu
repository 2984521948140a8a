/* Spike-fed synapses and the IF site they feed: the packed spikes of the
 * chunk are expanded to GEMM operands (0/1 is exact in every float format),
 * one GEMM over all steps x rows, then the IF scan over the potentials; or,
 * in fp16/bf16 with --fused-synapse, both in one kernel (below). */
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

/* One thread per 64-bit spike word: its 64 inputs (fewer at the end of a row,
 * up to the row stride ld) leave as 16-byte stores of 0 or 1. */
template <typename T> __global__ void unpack_kernel(const uint64_t *__restrict__ x, long rows, int K, int ld, T *out)
{
    constexpr int per = 16 / sizeof(T), lanes = 4 / sizeof(T) > 0 ? 4 / sizeof(T) : 1; /* elements per vector, per 32 bits */
    const uint32_t one = mst_operand_one<T>::bits;
    const int W = mst_spike_words(K);
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < rows * W; i += (long)gridDim.x * blockDim.x) {
        long row = i / W;
        int w = (int)(i % W), n = ld - 64 * w < 64 ? ld - 64 * w : 64;
        uint64_t word = x[i];
        if (K - 64 * w < 64) word &= (1ull << (K - 64 * w)) - 1ull; /* padding reads as zeros */
        uint4 *dst = (uint4 *)(out + row * ld + 64 * w);
        for (int q = 0; q < n / per; q++) {
            uint32_t u[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                uint32_t lo = (uint32_t)(word >> (per * q + lanes * e)) & 1u, hi = 0;
                if (lanes == 2) hi = (uint32_t)(word >> (per * q + 2 * e + 1)) & 1u;
                u[e] = lo * one | (hi * one) << 16;
            }
            dst[q] = make_uint4(u[0], u[1], u[2], u[3]);
        }
    }
}

static mst_status unpack(mst_cuda *c, const uint64_t *x, long rows, int K, int ld, mst_error *err)
{
    size_t elem = c->precision == MST_PRECISION_FP32 ? sizeof(float) : sizeof(__half);
    MST_TRY(mst_cuda_scratch(c, &c->operand, &c->operand_bytes, elem * (size_t)rows * ld, err));
    unsigned blocks = mst_cuda_blocks(rows * mst_spike_words(K), 256);
    blocks = blocks < 65535 * 16 ? blocks : 65535 * 16;
    if (c->precision == MST_PRECISION_FP32)
        MST_LAUNCH(unpack_kernel<float>, blocks, 256, 0, c->stream)(x, rows, K, ld, (float *)c->operand);
    else if (c->precision == MST_PRECISION_FP16)
        MST_LAUNCH(unpack_kernel<__half>, blocks, 256, 0, c->stream)(x, rows, K, ld, (__half *)c->operand);
    else
        MST_LAUNCH(unpack_kernel<__nv_bfloat16>, blocks, 256, 0, c->stream)(x, rows, K, ld, (__nv_bfloat16 *)c->operand);
    LAUNCH_TRY("unpack_kernel", err);
    return MST_OK;
}

/* The fused synapse (fp16/bf16, --fused-synapse): design.md's GEMM whose
 * epilogue runs the IF scan. One warp takes one neuron row r (an image's
 * token) and 64 output channels over all the chunk's steps: tensor-core tiles
 * of [16 steps] x 16 inputs x 16 channels, the spikes expanded per tile in
 * shared memory, the sums kept in fp32, then the IF scan of its 2 x 32
 * channels with the membranes in registers. Only spike bits (or scaled
 * spikes) and counts leave: no operand or potential buffer in memory. */
#define FUSED_WARPS 4

namespace wm = nvcuda::wmma;

typedef struct {
    const uint64_t *x;          /* [steps][R] rows of packed input spikes */
    const void *w;              /* [Kp][Np] operand copy, zero-padded */
    const float *bias;          /* [N] or NULL */
    float *v;                   /* [R][N] membranes */
    uint64_t *bits;             /* [steps][R] rows of packed spikes out, or NULL */
    float *out;                 /* [steps][R][N] spikes x out_scale when bits is NULL */
    mst_residual_fold fold;     /* or into the residual stream, when out is NULL too */
    unsigned long long *count;
    float out_scale;
    long R;
    int steps, K, Kp, N, Np;
} fused_args;

/* Lane l expands 8 inputs of row l/2 of the 16 x 16 tile at (t0, k0). */
template <typename T> __device__ void expand_tile(const fused_args *p, long r, int t0, int k0, T *A)
{
    int lane = threadIdx.x & 31, m = lane >> 1, half = lane & 1, kb = k0 + 8 * half, t = t0 + m;
    unsigned byte = 0;
    if (t < p->steps && kb < p->K) {
        const uint64_t *row = p->x + ((long)t * p->R + r) * mst_spike_words(p->K);
        byte = (unsigned)(row[kb / 64] >> (kb % 64)) & 0xffu;
        if (p->K - kb < 8) byte &= (1u << (p->K - kb)) - 1u;
    }
    for (int e = 0; e < 8; e++) A[m * 16 + 8 * half + e] = spike_value<T>((byte >> e) & 1u);
}

/* z[16 steps][64 channels] of row r from step t0, into the warp's Z. */
template <typename T> __device__ void tile_sums(const fused_args *p, long r, int t0, int n0, T *A, float *Z)
{
    wm::fragment<wm::accumulator, 16, 16, 16, float> acc[4];
#pragma unroll
    for (int j = 0; j < 4; j++) wm::fill_fragment(acc[j], 0.0f);
    for (int k0 = 0; k0 < p->Kp; k0 += 16) {
        expand_tile<T>(p, r, t0, k0, A);
        __syncwarp();
        wm::fragment<wm::matrix_a, 16, 16, 16, T, wm::row_major> a;
        wm::load_matrix_sync(a, A, 16);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::row_major> b;
            wm::load_matrix_sync(b, (const T *)p->w + (long)k0 * p->Np + n0 + 16 * j, p->Np);
            wm::mma_sync(acc[j], a, b, acc[j]);
        }
        __syncwarp(); /* A is rewritten next */
    }
#pragma unroll
    for (int j = 0; j < 4; j++) wm::store_matrix_sync(Z + 16 * j, acc[j], 64, wm::mem_row_major);
    __syncwarp();
}

template <typename T> __global__ void synapse_fused_kernel(fused_args p)
{
    __shared__ __align__(32) T a_tiles[FUSED_WARPS][16 * 16];
    __shared__ __align__(32) float z_tiles[FUSED_WARPS][16 * 64];
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31, n0 = blockIdx.y * 64;
    long r = (long)blockIdx.x * FUSED_WARPS + warp;
    if (r >= p.R) return; /* the whole warp */
    int c[2] = {n0 + lane, n0 + 32 + lane}, WN = mst_spike_words(p.N);
    const mst_fold_site *next = p.fold.x && !p.bits && !p.out && p.fold.next.v ? &p.fold.next : NULL;
    float v[2], bias[2], v2[2]; /* registers: the loops over h unroll */
    mst_cuda_fold_channel nch[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        v[h] = c[h] < p.N ? p.v[r * p.N + c[h]] : 0.0f;
        bias[h] = p.bias && c[h] < p.N ? p.bias[c[h]] : 0.0f;
        v2[h] = next && c[h] < p.N ? next->v[r * p.N + c[h]] : 0.0f;
        nch[h] = mst_cuda_fold_channel_of(&p.fold.next, c[h], next && c[h] < p.N);
    }
    unsigned long long fired = 0, next_fired = 0;
    float *Z = z_tiles[warp];
    for (int t0 = 0; t0 < p.steps; t0 += 16) {
        tile_sums<T>(&p, r, t0, n0, a_tiles[warp], Z);
        for (int m = 0; m < 16 && t0 + m < p.steps; m++) {
            long row = (long)(t0 + m) * p.R + r;
            float s[2], s2[2] = {0.0f, 0.0f};
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float u = Z[m * 64 + 32 * h + lane];
                if (p.bias) u = u + bias[h]; /* as the two-kernel scan adds it */
                s[h] = c[h] < p.N ? mst_if_step(&v[h], u) : 0.0f;
                fired += s[h] != 0.0f;
                if (!p.bits && c[h] < p.N) {
                    long at = row * p.N + c[h];
                    if (p.out)
                        p.out[at] = s[h] * p.out_scale;
                    else if (p.fold.x)
                        p.fold.x[at] = mst_residual(p.fold.x[at], s[h] * p.out_scale, p.fold.lam, p.fold.scale,
                                                    p.fold.shift, c[h]);
                    if (next) s2[h] = mst_cuda_fold_fire(&v2[h], &nch[h], p.fold.x[at]);
                }
            }
            if (next) { /* the IF site that reads the new x (sc2, the next block's sc1) */
                unsigned lo = __ballot_sync(0xffffffffu, s2[0] != 0.0f), hi = __ballot_sync(0xffffffffu, s2[1] != 0.0f);
                if (lane == 0) next->bits[row * WN + n0 / 64] = (uint64_t)hi << 32 | lo, next_fired += __popc(lo) + __popc(hi);
            }
            if (p.bits) {
                unsigned lo = __ballot_sync(0xffffffffu, s[0] != 0.0f), hi = __ballot_sync(0xffffffffu, s[1] != 0.0f);
                if (lane == 0) p.bits[row * WN + n0 / 64] = (uint64_t)hi << 32 | lo;
            }
        }
        __syncwarp(); /* Z is rewritten next */
    }
    for (int h = 0; h < 2; h++) {
        if (c[h] < p.N) p.v[r * p.N + c[h]] = v[h];
        if (next && c[h] < p.N) next->v[r * p.N + c[h]] = v2[h];
    }
    mst_cuda_count(p.count, fired);
    if (next) mst_cuda_count(mst_cuda_counter(next->count), next_fired);
}

static mst_status synapse_fused(mst_cuda *c, const fused_args *a, const float *w, mst_error *err)
{
    fused_args p = *a;
    if (p.R == 0 || p.N == 0 || p.steps == 0) return MST_OK;
    MST_TRY(mst_cuda_half_weight_get(c, w, p.K, p.N, p.Kp, p.Np, MST_WEIGHT_ROWS, &p.w, err));
    long blocks = (p.R + FUSED_WARPS - 1) / FUSED_WARPS;
    if (blocks > 0x7fffffffL) return mst_fail(err, MST_ERR_UNSUPPORTED, "fused synapse over %ld rows", p.R);
    dim3 grid((unsigned)(blocks ? blocks : 1), (unsigned)(p.Np / 64));
    if (c->precision == MST_PRECISION_FP16)
        MST_LAUNCH(synapse_fused_kernel<__half>, grid, 32 * FUSED_WARPS, 0, c->stream)(p);
    else
        MST_LAUNCH(synapse_fused_kernel<__nv_bfloat16>, grid, 32 * FUSED_WARPS, 0, c->stream)(p);
    LAUNCH_TRY("synapse_fused_kernel", err);
    return MST_OK;
}

mst_status mst_cuda_synapse_if(void *ctx, const mst_synapse_args *a, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    int K = a->K, N = a->N;
    long R = a->R;
    if (c->wgmma_synapse && c->precision != MST_PRECISION_FP32) return mst_cuda_synapse_wgmma(c, a, err);
    if (c->fused_synapse && c->precision != MST_PRECISION_FP32) {
        fused_args p = {a->x, NULL, a->b, a->v, a->bits, a->out, a->fold, mst_cuda_counter(a->count), a->out_scale, R,
                        a->steps, K, (K + 15) / 16 * 16, N, (N + 63) / 64 * 64};
        return synapse_fused(c, &p, a->w, err);
    }
    long rows = (long)a->steps * R;
    int ld = mst_cuda_unpack_ld(K, c->precision == MST_PRECISION_FP32 ? sizeof(float) : sizeof(__half));
    MST_TRY(unpack(c, a->x, rows, K, ld, err));
    MST_TRY(mst_cuda_scratch(c, (void **)&c->z, &c->z_bytes, sizeof(float) * (size_t)rows * N, err));
    /* z = spikes . w; the scan adds the bias as it reads z, which spares a
       pass that fills z with it and the GEMM's read of z (beta = 0) */
    MST_TRY(mst_cuda_gemm(c, c->operand, c->precision != MST_PRECISION_FP32, rows, K, ld, a->w, N, c->z, 0, err));
    mst_cuda_if p = {};
    p.in = c->z, p.in_tstride = R * N, p.bias = a->b, p.C = N, p.v = a->v, p.out = a->out, p.out_scale = a->out_scale;
    p.fold = a->fold, p.bits = (uint32_t *)a->bits, p.count = mst_cuda_counter(a->count), p.steps = a->steps;
    p.R = R * N;
    return mst_cuda_if_launch(c, &p, err);
}
