/* The IF neuron as the CUDA kernels run it, shared by if_scan.cu and the
 * scans that follow a GEMM in synapse.cu and synapse_wgmma.cu. */
#ifndef MST_CUDA_IF_SCAN_CUH
#define MST_CUDA_IF_SCAN_CUH

#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "cuda_backend.h"

typedef struct {
    const float *in;
    long in_tstride;
    const float *scale, *shift; /* per-channel affine (BatchNorm folded), or NULL */
    const float *bias;          /* per-channel bias added after the matmul, or NULL */
    int C;
    float *v;
    float *out;
    float out_scale;
    mst_residual_fold fold;     /* with bits and out NULL: spikes * out_scale into the residual stream */
    uint32_t *bits;             /* packed spikes as 32-bit halves, or NULL */
    unsigned long long *count;
    int steps;
    long R;
} mst_cuda_if;

/* What an IF kernel is compiled for, so that its step loop holds no branch
 * on its arguments: where the spikes go, and the input transform. */
enum { MST_IF_BITS, MST_IF_FLOATS, MST_IF_FOLD, MST_IF_FOLD_NEXT };

/* Where an IF site's spikes go (p->bits, p->out, p->fold). */
static inline int mst_cuda_if_output(const uint64_t *bits, const float *out, const mst_residual_fold *fold)
{
    return bits ? MST_IF_BITS : out ? MST_IF_FLOATS : fold->next.v ? MST_IF_FOLD_NEXT : MST_IF_FOLD;
}
#define MST_IF_AFFINE 1 /* per-channel scale and shift (BatchNorm folded) */
#define MST_IF_BIAS 2   /* per-channel bias after a matmul */

/* A channel's input transform, read once per neuron rather than once per
 * step; applied in the CPU's order of operations (affine, then bias). */
typedef struct {
    float scale, shift, bias;
} mst_cuda_if_channel;

__device__ __forceinline__ mst_cuda_if_channel mst_cuda_if_channel_of(const mst_cuda_if *p, int c, bool live)
{
    mst_cuda_if_channel ch = {1.0f, 0.0f, 0.0f};
    if (live && p->scale) ch.scale = p->scale[c], ch.shift = p->shift[c];
    if (live && p->bias) ch.bias = p->bias[c];
    return ch;
}

template <int XF> __device__ __forceinline__ float mst_cuda_if_transform(const mst_cuda_if_channel *ch, float u)
{
    if (XF & MST_IF_AFFINE) u = u * ch->scale + ch->shift;
    if (XF & MST_IF_BIAS) u = u + ch->bias;
    return u;
}

/* The transform bits of an IF site's arguments. */
static inline int mst_cuda_if_xform(const mst_cuda_if *p) { return (p->scale ? MST_IF_AFFINE : 0) | (p->bias ? MST_IF_BIAS : 0); }

/* Steps taken per batch of loads: the inputs of the next steps are in flight
 * while the membrane walks the current ones. */
#define MST_IF_BATCH 4

/* The IF site after a fold, for one channel: its input affine read once. */
typedef struct {
    float scale, shift;
    bool affine;
} mst_cuda_fold_channel;

__device__ __forceinline__ mst_cuda_fold_channel mst_cuda_fold_channel_of(const mst_fold_site *f, int c, bool live)
{
    mst_cuda_fold_channel ch = {1.0f, 0.0f, f->scale != NULL};
    if (live && ch.affine) ch.scale = f->scale[c], ch.shift = f->shift[c];
    return ch;
}

/* The fold's next IF site reading the new x, as if_scan would (CPU order). */
__device__ __forceinline__ float mst_cuda_fold_fire(float *v, const mst_cuda_fold_channel *ch, float x)
{
    return mst_if_step(v, ch->affine ? x * ch->scale + ch->shift : x);
}

/* Neuron (row, c) over the steps; c may be padding (>= C) so that every lane
 * of the warp reaches the ballot. Lane t % 32 keeps step t's ballot, and the
 * warp stores 32 steps' words at once: no per-step branch to lane 0.
 * Returns the spikes it fired (for packed output: the spikes of the words
 * this lane stored, so the warp's sum is the same); *next_fired, those of
 * the fold's next site. OUT and XF: as p says (mst_cuda_if_output,
 * mst_cuda_if_xform). */
template <int OUT, int XF>
__device__ __forceinline__ int mst_cuda_if_neuron(const mst_cuda_if *p, long row, int c, int *next_fired)
{
    const bool live = c < p->C, fold = OUT == MST_IF_FOLD || OUT == MST_IF_FOLD_NEXT;
    const bool ballots = OUT == MST_IF_BITS || OUT == MST_IF_FOLD_NEXT;
    const int W32 = 2 * mst_spike_words(p->C), steps = p->steps, lane = threadIdx.x & 31;
    const long r = row * p->C + c, rows = p->R / p->C, tstride = p->in_tstride;
    const mst_cuda_if_channel ch = mst_cuda_if_channel_of(p, c, live);
    const mst_cuda_fold_channel nch = mst_cuda_fold_channel_of(&p->fold.next, c, live);
    const float *__restrict__ in = p->in + (live ? r : 0);
    float *__restrict__ out = OUT == MST_IF_FLOATS ? p->out + r : fold ? p->fold.x + r : NULL;
    uint32_t *__restrict__ words = OUT == MST_IF_BITS ? p->bits : OUT == MST_IF_FOLD_NEXT ? (uint32_t *)p->fold.next.bits : NULL;
    float v = live ? p->v[r] : 0.0f, v2 = OUT == MST_IF_FOLD_NEXT && live ? p->fold.next.v[r] : 0.0f;
    int fired = 0;
    for (int tb = 0; tb < steps; tb += 32) { /* 32 steps: one word per lane */
        const int tn = steps - tb < 32 ? steps - tb : 32;
        uint32_t mine = 0;
        for (int k0 = 0; k0 < tn; k0 += MST_IF_BATCH) {
            float u[MST_IF_BATCH];
#pragma unroll
            for (int k = 0; k < MST_IF_BATCH; k++)
                u[k] = live && k0 + k < tn ? in[(long)(tb + k0 + k) * tstride] : 0.0f;
#pragma unroll
            for (int k = 0; k < MST_IF_BATCH; k++) {
                if (k0 + k >= tn) break; /* uniform across the warp: every lane has the same steps */
                float s = live ? mst_if_step(&v, mst_cuda_if_transform<XF>(&ch, u[k])) : 0.0f, x = 0.0f;
                if (OUT != MST_IF_BITS && live) {
                    long at = (long)(tb + k0 + k) * p->R;
                    fired += s != 0.0f;
                    if (OUT == MST_IF_FLOATS)
                        out[at] = s * p->out_scale;
                    else
                        out[at] = x = mst_residual(out[at], s * p->out_scale, p->fold.lam, p->fold.scale, p->fold.shift, c);
                }
                if (OUT == MST_IF_FOLD_NEXT) s = live ? mst_cuda_fold_fire(&v2, &nch, x) : 0.0f;
                if (ballots) {
                    unsigned m = __ballot_sync(0xffffffffu, s != 0.0f);
                    mine = lane == k0 + k ? m : mine;
                }
            }
        }
        if (ballots && lane < tn) {
            words[((long)(tb + lane) * rows + row) * W32 + c / 32] = mine;
            if (OUT == MST_IF_BITS)
                fired += __popc(mine);
            else
                *next_fired += __popc(mine);
        }
    }
    if (live) p->v[r] = v;
    if (OUT == MST_IF_FOLD_NEXT && live) p->fold.next.v[r] = v2;
    return fired;
}

/* One atomic per warp, for kernels whose warps leave early. */
__device__ __forceinline__ void mst_cuda_count(unsigned long long *count, unsigned long long n)
{
    for (int o = 16; o > 0; o >>= 1) n += __shfl_down_sync(0xffffffffu, n, o);
    if (count && (threadIdx.x & 31) == 0 && n) atomicAdd(count, n);
}

/* One atomic per block: every thread of the block must call it. */
__device__ __forceinline__ void mst_cuda_count_block(unsigned long long *count, unsigned long long n)
{
    __shared__ unsigned long long warp_sums[32];
    if (!count) return; /* a kernel argument: the same in every thread */
    for (int o = 16; o > 0; o >>= 1) n += __shfl_down_sync(0xffffffffu, n, o);
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x / 32] = n;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long sum = 0;
        for (unsigned w = 0; w < (blockDim.x + 31) / 32; w++) sum += warp_sums[w];
        if (sum) atomicAdd(count, sum);
    }
}

mst_status mst_cuda_if_launch(mst_cuda *c, const mst_cuda_if *p, mst_error *err);

#endif
