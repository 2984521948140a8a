/* Window attention: one thread block per (image, window, head) runs all the
 * chunk's steps of q.k^T (AND + popcount on packed spikes), IF_attn, the
 * three RSM masks drawn with cuRAND's device Philox (spec section 4: each
 * thread initialises the generator at a 4-aligned offset and takes one
 * curand4), relative bias and shift mask, softmax and .v. Sums run in the CPU
 * backend's order, and exp() is the shared mst_expf, so that the two can agree
 * to the last bit. */
#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "../common/mst_window.h"
#include "cuda_backend.h"
#include "philox.cuh"

typedef struct {
    int n, d, W32, nw;
    int *tok;
    float *expb, *gain, *u, *v, *rowsum, *qf, *kf;
    uint32_t *qb, *kb;
} unit_shared;

static size_t shared_bytes(int n, int d, int ann)
{
    size_t N = (size_t)n, D = (size_t)d, W32 = (D + 31) / 32;
    size_t floats = 2 * N * N + (MST_QCFS_LEVELS + 1) + N * D + N + (ann ? 2 * N * D : 0);
    return sizeof(int) * N + sizeof(float) * floats + sizeof(uint32_t) * 2 * N * W32 + 16;
}

__device__ static unit_shared carve(char *mem, int n, int d, int nw)
{
    unit_shared s;
    s.n = n, s.d = d, s.W32 = (d + 31) / 32, s.nw = nw;
    s.qb = (uint32_t *)mem, mem += sizeof(uint32_t) * n * s.W32;
    s.kb = (uint32_t *)mem, mem += sizeof(uint32_t) * n * s.W32;
    s.tok = (int *)mem, mem += sizeof(int) * n;
    float *f = (float *)mem;
    s.expb = f, f += n * n;
    s.u = f, f += n * n;
    s.gain = f, f += MST_QCFS_LEVELS + 1;
    s.v = f, f += n * d;
    s.rowsum = f, f += n;
    s.qf = f, f += n * d;
    s.kf = f;
    return s;
}

/* tok, exp(B_rel + M_shift - row max) and the gain table of this unit. */
__device__ static void unit_constants(const mst_attn_args *a, int win, int h, unit_shared *s)
{
    int n = s->n;
    const float *rb = a->rel_bias + (long)h * n * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        s->tok[i] = mst_window_token(win, i, a->res, a->window, a->shift);
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            float e = rb[i * n + j] + mst_shift_mask(win, i, j, a->res, a->window, a->shift);
            s->expb[i * n + j] = e;
            mx = e > mx ? e : mx;
        }
        for (int j = 0; j < n; j++) s->expb[i * n + j] = mst_expf(s->expb[i * n + j] - mx);
    }
    for (int l = threadIdx.x; l <= MST_QCFS_LEVELS; l += blockDim.x)
        s->gain[l] = mst_expf(a->lam_attn * ((float)l / (float)MST_QCFS_LEVELS - 0.5f));
}

/* q, k and v of the unit at one step: bits (SNN) or levels (ANN). */
__device__ static void gather(const mst_attn_args *a, long row0, int h, unit_shared *s, unsigned long long *cnt)
{
    int n = s->n, d = s->d, C = a->dim, W3 = mst_spike_words(3 * C);
    if (a->mode == MST_MODE_SNN) {
        for (int idx = threadIdx.x; idx < 2 * n * s->W32; idx += blockDim.x) {
            int part = idx / (n * s->W32), i = idx / s->W32 % n, w = idx % s->W32;
            int len = d - 32 * w < 32 ? d - 32 * w : 32;
            const uint64_t *row = a->qkv_bits + (row0 + s->tok[i]) * W3;
            uint32_t f = (uint32_t)mst_bit_field(row, part * C + h * d + 32 * w, len);
            (part ? s->kb : s->qb)[i * s->W32 + w] = f;
            cnt[part ? MST_ATTN_K : MST_ATTN_Q] += __popc(f);
        }
        for (int idx = threadIdx.x; idx < n * d; idx += blockDim.x) {
            int i = idx / d, j = idx % d;
            int bit = mst_bit(a->qkv_bits + (row0 + s->tok[i]) * W3, 2 * C + h * d + j);
            s->v[idx] = (float)bit;
            cnt[MST_ATTN_V] += bit;
        }
    } else {
        for (int idx = threadIdx.x; idx < 3 * n * d; idx += blockDim.x) {
            int part = idx / (n * d), i = idx / d % n, j = idx % d;
            float x = a->qkv[(row0 + s->tok[i]) * 3 * C + part * C + h * d + j];
            (part == 0 ? s->qf : part == 1 ? s->kf : s->v)[i * d + j] = x;
        }
    }
}

/* RSM on q (part 0) or k (part 1): [window][head][token][j] offsets. */
__device__ static void mask_qk(const mst_attn_args *a, int b, int win, int h, int t, int part, unit_shared *s)
{
    int n = s->n, d = s->d;
    uint64_t base = ((uint64_t)win * a->heads + h) * (uint64_t)(n * d);
    uint64_t sub = mst_mask_subsequence(a->first_image + (uint64_t)b, a->site_q + (uint32_t)part, (uint32_t)t);
    uint64_t g0 = base / 4, g1 = (base + (uint64_t)(n * d) + 3) / 4, threshold = a->mask_threshold[part];
    /* chosen once, outside the loop: GCC 12 miscompiled the selection inside it under -fsanitize=shift */
    uint32_t *bits = part ? s->kb : s->qb;
    float *levels = part ? s->kf : s->qf;
    for (uint64_t g = g0 + threadIdx.x; g < g1; g += blockDim.x) {
        uint4 r = draw4(a->seed, sub, g);
        for (int e = 0; e < 4; e++) {
            long p = (long)(4 * g + e) - (long)base;
            if (p < 0 || p >= (long)n * d || mst_mask_keep(lane_of(r, e), threshold)) continue;
            int i = (int)(p / d), j = (int)(p % d);
            if (a->mode == MST_MODE_SNN)
                atomicAnd(&bits[i * s->W32 + j / 32], ~(1u << (j % 32)));
            else
                levels[p] = 0.0f;
        }
    }
}

/* Element p of the score matrix: IF_attn (SNN) or QCFS (ANN) of q.k^T * scale. */
__device__ __forceinline__ float score(const mst_attn_args *a, const unit_shared *s, int p, float *vm)
{
    int i = p / s->n, j = p % s->n;
    if (a->mode == MST_MODE_SNN) {
        int c = 0;
        for (int w = 0; w < s->W32; w++) c += __popc(s->qb[i * s->W32 + w] & s->kb[j * s->W32 + w]);
        return mst_if_step(&vm[p], (float)c * a->qk_scale);
    }
    float acc = 0.0f;
    for (int c = 0; c < s->d; c++) acc += s->qf[i * s->d + c] * s->kf[j * s->d + c];
    return mst_qcfs(acc * a->qk_scale);
}

/* u = exp(A) factored as exp(B_rel + M_shift - max) x gain[level], A's RSM
 * drawn per [window][head][query][key] offset. */
__device__ static void scores(const mst_attn_args *a, int b, int win, int h, int t, float *vm, unit_shared *s,
                              unsigned long long *cnt)
{
    uint64_t threshold = a->mask_threshold[2];
    int nn = s->n * s->n, masked = threshold > 0;
    uint64_t base = ((uint64_t)win * a->heads + h) * (uint64_t)nn;
    uint64_t sub = mst_mask_subsequence(a->first_image + (uint64_t)b, a->site_q + 2, (uint32_t)t);
    uint64_t g0 = base / 4, g1 = (base + (uint64_t)nn + 3) / 4;
    for (uint64_t g = g0 + threadIdx.x; g < g1; g += blockDim.x) {
        uint4 r = masked ? draw4(a->seed, sub, g) : make_uint4(0, 0, 0, 0);
        for (int e = 0; e < 4; e++) {
            long p = (long)(4 * g + e) - (long)base;
            if (p < 0 || p >= nn) continue;
            float sv = score(a, s, (int)p, vm);
            int keep = masked ? mst_mask_keep(lane_of(r, e), threshold) : 1, fired = sv != 0.0f;
            int level = keep * (int)(sv * (float)MST_QCFS_LEVELS + 0.5f);
            cnt[MST_ATTN_S] += fired;
            cnt[MST_ATTN_S_KEPT] += fired & keep;
            s->u[p] = s->expb[p] * s->gain[level];
        }
    }
}

/* softmax . v in the CPU's order: row sums left to right, each channel as
 * mst_attn_weighted sums it. */
__device__ static void softmax_v(const mst_attn_args *a, long row0, int h, unit_shared *s)
{
    int n = s->n, d = s->d, C = a->dim;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float sum = 0.0f;
        for (int j = 0; j < n; j++) sum += s->u[i * n + j];
        s->rowsum[i] = sum;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < n * d; idx += blockDim.x) {
        int i = idx / d, c = idx % d;
        float o = mst_attn_weighted(s->u + i * n, s->v, n, d, c);
        a->out[(row0 + s->tok[i]) * C + h * d + c] = o * (a->v_scale / s->rowsum[i]);
    }
}

__global__ void window_attention_kernel(mst_attn_args a, int nw)
{
    MST_DYNAMIC_SHARED(char, mem);
    int n = a.window * a.window, d = a.dim / a.heads;
    long unit = blockIdx.x;
    int b = (int)(unit / ((long)nw * a.heads)), win = (int)(unit / a.heads % nw), h = (int)(unit % a.heads);
    if (a.keys) { /* a replayed graph: this chunk's images and steps */
        a.first_image = a.keys[0];
        a.t0 = (int)a.keys[1];
    }
    unit_shared s = carve(mem, n, d, nw);
    float *vm = a.v_attn + (((long)b * nw + win) * a.heads + h) * n * n;
    unsigned long long cnt[MST_ATTN_NCOUNTS] = {0};
    unit_constants(&a, win, h, &s);
    __syncthreads();
    for (int t = a.t0; t < a.t0 + a.steps; t++) {
        long row0 = ((long)(t - a.t0) * a.batch + b) * a.res * a.res;
        gather(&a, row0, h, &s, cnt);
        __syncthreads();
        if (a.mask_threshold[0] || a.mask_threshold[1]) {
            if (a.mask_threshold[0]) mask_qk(&a, b, win, h, t, 0, &s);
            if (a.mask_threshold[1]) mask_qk(&a, b, win, h, t, 1, &s);
            __syncthreads();
        }
        if (a.mode == MST_MODE_SNN)
            for (int idx = threadIdx.x; idx < 2 * n * s.W32; idx += blockDim.x)
                cnt[idx < n * s.W32 ? MST_ATTN_Q_KEPT : MST_ATTN_K_KEPT] +=
                    __popc(idx < n * s.W32 ? s.qb[idx] : s.kb[idx - n * s.W32]);
        scores(&a, b, win, h, t, vm, &s, cnt);
        __syncthreads();
        softmax_v(&a, row0, h, &s);
        __syncthreads();
    }
    if (!a.counts) return;
    for (int k = 0; k < MST_ATTN_NCOUNTS; k++) {
        unsigned long long x = cnt[k];
        for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
        if ((threadIdx.x & 31) == 0 && x) atomicAdd((unsigned long long *)&a.counts[k], x);
    }
}

mst_status mst_cuda_window_attention(void *ctx, const mst_attn_args *a, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    int n = a->window * a->window, d = a->dim / a->heads, nw = (a->res / a->window) * (a->res / a->window);
    long units = (long)a->batch * nw * a->heads;
    if (units == 0) return MST_OK;
    size_t shared = shared_bytes(n, d, a->mode == MST_MODE_ANN);
    if (shared > (size_t)c->shared_optin)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "window attention with window %d and head dim %d needs %zu bytes of "
                        "shared memory; %s has %d", a->window, d, shared, c->name, c->shared_optin);
    if (units > 0x7fffffffL) return mst_fail(err, MST_ERR_UNSUPPORTED, "%ld attention units in one launch", units);
    MST_LAUNCH(window_attention_kernel, (unsigned)units, 128, shared, c->stream)(*a, nw);
    LAUNCH_TRY("window_attention_kernel", err);
    return MST_OK;
}

mst_status mst_cuda_attention_setup(mst_cuda *c, mst_error *err)
{
    if (c->shared_optin > 48 * 1024)
        CUDA_TRY(cudaFuncSetAttribute(window_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      c->shared_optin),
                 err);
    return MST_OK;
}

__global__ void draw_kernel(uint64_t seed, uint64_t sub, uint64_t offset, long n, uint32_t *out)
{
    uint64_t g0 = offset / 4, g1 = (offset + (uint64_t)n + 3) / 4;
    for (uint64_t g = g0 + blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; g < g1; g += (uint64_t)gridDim.x * blockDim.x) {
        uint4 r = draw4(seed, sub, g);
        for (int e = 0; e < 4; e++) {
            long p = (long)(4 * g + e) - (long)offset;
            if (p >= 0 && p < n) out[p] = lane_of(r, e);
        }
    }
}

/* Raw numbers offset .. offset+n-1 of one subsequence, drawn the way the
 * attention kernel draws its masks (the GPU-vs-CPU mask test compares them
 * with the CPU's Philox). */
extern "C" mst_status mst_cuda_draw(void *ctx, uint64_t seed, uint64_t sub, uint64_t offset, long n, uint32_t *out,
                                    mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    MST_LAUNCH(draw_kernel, mst_cuda_blocks(n / 4 + 2, 128), 128, 0, c->stream)(seed, sub, offset, n, out);
    LAUNCH_TRY("draw_kernel", err);
    return MST_OK;
}
