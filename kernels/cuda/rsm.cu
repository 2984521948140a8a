/* Random Spike Masking where spikes enter the MLP's linear layers (spec
 * section 4b), in place. SNN: one thread per 64-bit word of packed spikes,
 * drawing only for the bits that are set (one Philox block serves up to four
 * neighbours); ANN: one thread per QCFS level. */
#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "cuda_backend.h"
#include "philox.cuh"

/* The subsequence and mask offset of element `c` of row `row`. */
__device__ __forceinline__ uint64_t row_key(const mst_mask_args &a, long row, uint64_t *base)
{
    long per_step = (long)a.batch * a.tokens;
    int t = a.t0 + (int)(row / per_step), b = (int)(row % per_step / a.tokens);
    *base = (uint64_t)(row % a.tokens) * (uint64_t)a.channels;
    return mst_mask_subsequence(a.first_image + (uint64_t)b, a.site, (uint32_t)t);
}

/* The bits of word x (bits base.. of its row's offsets) that the mask keeps. */
__device__ static uint64_t keep_bits(const mst_mask_args &a, uint64_t sub, uint64_t base, uint64_t x)
{
    uint64_t group = ~(uint64_t)0;
    uint4 r = make_uint4(0, 0, 0, 0);
    for (uint64_t m = x; m; m &= m - 1) {
        int j = __ffsll((long long)m) - 1;
        uint64_t off = base + (uint64_t)j;
        if (off >> 2 != group) group = off >> 2, r = draw4(a.seed, sub, group);
        if (!mst_mask_keep(lane_of(r, (int)(off & 3)), a.threshold)) x &= ~((uint64_t)1 << j);
    }
    return x;
}

__global__ void mask_bits_kernel(mst_mask_args a, long words)
{
    if (a.keys) { /* a replayed graph: this chunk's images and steps */
        a.first_image = a.keys[0];
        a.t0 = (int)a.keys[1];
    }
    int W = mst_spike_words(a.channels);
    unsigned long long kept = 0;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < words; i += (long)gridDim.x * blockDim.x) {
        uint64_t x = a.bits[i], base;
        if (!x) continue;
        uint64_t sub = row_key(a, i / W, &base);
        x = keep_bits(a, sub, base + 64 * (uint64_t)(i % W), x);
        a.bits[i] = x;
        kept += (unsigned long long)__popcll(x);
    }
    if (!a.kept) return;
    for (int o = 16; o > 0; o >>= 1) kept += __shfl_down_sync(0xffffffffu, kept, o);
    if ((threadIdx.x & 31) == 0 && kept) atomicAdd((unsigned long long *)a.kept, kept);
}

__global__ void mask_levels_kernel(mst_mask_args a, long n)
{
    if (a.keys) {
        a.first_image = a.keys[0];
        a.t0 = (int)a.keys[1];
    }
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        uint64_t base, sub = row_key(a, i / a.channels, &base), off = base + (uint64_t)(i % a.channels);
        if (!mst_mask_keep(lane_of(draw4(a.seed, sub, off >> 2), (int)(off & 3)), a.threshold)) a.levels[i] = 0.0f;
    }
}

mst_status mst_cuda_mask_spikes(void *ctx, const mst_mask_args *a, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    long rows = (long)a->steps * a->batch * a->tokens;
    if (rows == 0) return MST_OK;
    if (a->bits) {
        long words = rows * mst_spike_words(a->channels);
        MST_LAUNCH(mask_bits_kernel, mst_cuda_blocks(words, 256), 256, 0, c->stream)(*a, words);
        LAUNCH_TRY("mask_bits_kernel", err);
    } else {
        long n = rows * a->channels;
        MST_LAUNCH(mask_levels_kernel, mst_cuda_blocks(n, 256), 256, 0, c->stream)(*a, n);
        LAUNCH_TRY("mask_levels_kernel", err);
    }
    return MST_OK;
}
