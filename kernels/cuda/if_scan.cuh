/* The IF neuron as the CUDA kernels run it, shared by if_scan.cu and the
 * scan that follows the GEMM in synapse.cu. */
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
    uint32_t *bits;             /* packed spikes as 32-bit halves, or NULL */
    unsigned long long *count;
    int steps;
    long R;
} mst_cuda_if;

/* The input of neuron r (channel c) at step t, in the CPU's order of operations. */
__device__ __forceinline__ float mst_cuda_if_input(const mst_cuda_if *p, long t, long r, int c)
{
    float u = p->in[t * p->in_tstride + r];
    if (p->scale) u = u * p->scale[c] + p->shift[c];
    if (p->bias) u = u + p->bias[c];
    return u;
}

/* Neuron (row, c) over the steps; c may be padding (>= C) so that every lane
 * of the warp reaches the ballot. Returns the spikes it fired. */
__device__ __forceinline__ int mst_cuda_if_neuron(const mst_cuda_if *p, long row, int c)
{
    int live = c < p->C, W32 = 2 * mst_spike_words(p->C), fired = 0;
    long r = row * p->C + c, rows = p->R / p->C;
    float v = live ? p->v[r] : 0.0f;
    for (int t = 0; t < p->steps; t++) {
        float s = live ? mst_if_step(&v, mst_cuda_if_input(p, t, r, c)) : 0.0f;
        fired += s != 0.0f;
        if (p->bits) {
            unsigned m = __ballot_sync(0xffffffffu, s != 0.0f);
            if ((threadIdx.x & 31) == 0) p->bits[((long)t * rows + row) * W32 + c / 32] = m;
        } else if (live) {
            p->out[(long)t * p->R + r] = s * p->out_scale;
        }
    }
    if (live) p->v[r] = v;
    return fired;
}

/* One atomic per warp. */
__device__ __forceinline__ void mst_cuda_count(unsigned long long *count, unsigned long long n)
{
    for (int o = 16; o > 0; o >>= 1) n += __shfl_down_sync(0xffffffffu, n, o);
    if (count && (threadIdx.x & 31) == 0 && n) atomicAdd(count, n);
}

mst_status mst_cuda_if_launch(mst_cuda *c, const mst_cuda_if *p, mst_error *err);

#endif
