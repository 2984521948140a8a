/* IF sites over a chunk of steps: one thread per neuron walks the steps with
 * its membrane in a register; a warp covers 32 channels of one row, so its
 * ballot is one 32-bit half of a packed spike word (little-endian halves of
 * the 64-bit words of mst_bits.h). */
#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "cuda_backend.h"
#include "if_scan.cuh"

/* A grid of one resident wave: each thread walks several neurons, and the
 * spike count costs one atomic per block. */
template <int OUT, int XF> __global__ void if_scan_kernel(mst_cuda_if p)
{
    const int Cpad = mst_spike_words(p.C) * 64;
    const long total = p.R / p.C * Cpad;
    unsigned long long fired = 0;
    int next_fired = 0;
    for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total; idx += (long)gridDim.x * blockDim.x)
        fired += mst_cuda_if_neuron<OUT, XF>(&p, idx / Cpad, (int)(idx % Cpad), &next_fired);
    mst_cuda_count_block(p.count, fired);
    if (OUT == MST_IF_FOLD_NEXT) {
        __syncthreads(); /* the block sum's shared words are reused */
        mst_cuda_count_block(mst_cuda_counter(p.fold.next.count), (unsigned long long)next_fired);
    }
}

template <int XF> __global__ void qcfs_kernel(mst_cuda_if p)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (long)p.steps * p.R;
         i += (long)gridDim.x * blockDim.x) {
        long t = i / p.R, r = i % p.R;
        mst_cuda_if_channel ch = mst_cuda_if_channel_of(&p, (int)(r % p.C), true);
        p.out[i] = mst_qcfs(mst_cuda_if_transform<XF>(&ch, p.in[t * p.in_tstride + r])) * p.out_scale;
    }
}

/* Threads in multiples of 32 so that every warp's ballot sees 32 lanes. */
mst_status mst_cuda_if_launch(mst_cuda *c, const mst_cuda_if *p, mst_error *err)
{
    long total = p->R / p->C * mst_spike_words(p->C) * 64L;
    unsigned blocks = mst_cuda_blocks(total, 256), wave = (unsigned)c->resident_blocks;
    blocks = blocks < wave ? blocks : wave;
#define MST_IF_KERNELS(o) {if_scan_kernel<o, 0>, if_scan_kernel<o, 1>, if_scan_kernel<o, 2>, if_scan_kernel<o, 3>}
    static void (*const kernels[4][4])(mst_cuda_if) = {MST_IF_KERNELS(MST_IF_BITS), MST_IF_KERNELS(MST_IF_FLOATS),
                                                       MST_IF_KERNELS(MST_IF_FOLD), MST_IF_KERNELS(MST_IF_FOLD_NEXT)};
#undef MST_IF_KERNELS
    int out = mst_cuda_if_output((const uint64_t *)p->bits, p->out, &p->fold);
    if (out >= MST_IF_FOLD && !p->fold.x) return mst_fail(err, MST_ERR_ARG, "IF site with nowhere to put its spikes");
    MST_LAUNCH(kernels[out][mst_cuda_if_xform(p)], blocks, 256, 0, c->stream)(*p);
    LAUNCH_TRY("if_scan_kernel", err);
    return MST_OK;
}

static mst_cuda_if from_args(const mst_if_args *a)
{
    mst_cuda_if p = {};
    p.in = a->in, p.in_tstride = a->in_tstride, p.scale = a->scale, p.shift = a->shift, p.bias = NULL;
    p.C = a->channels, p.v = a->v, p.out = a->out, p.out_scale = a->out_scale;
    p.bits = (uint32_t *)a->bits, p.count = mst_cuda_counter(a->count), p.steps = a->steps, p.R = a->R;
    return p;
}

mst_status mst_cuda_if_scan(void *ctx, const mst_if_args *a, mst_error *err)
{
    mst_cuda_if p = from_args(a);
    return mst_cuda_if_launch((mst_cuda *)ctx, &p, err);
}

mst_status mst_cuda_qcfs(void *ctx, const mst_if_args *a, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    mst_cuda_if p = from_args(a);
    long n = (long)a->steps * a->R;
    unsigned blocks = mst_cuda_blocks(n, 256);
    static void (*const kernels[4])(mst_cuda_if) = {qcfs_kernel<0>, qcfs_kernel<1>, qcfs_kernel<2>, qcfs_kernel<3>};
    MST_LAUNCH(kernels[mst_cuda_if_xform(&p)], blocks < 65535 * 16 ? blocks : 65535 * 16, 256, 0, c->stream)(p);
    LAUNCH_TRY("qcfs_kernel", err);
    return MST_OK;
}
