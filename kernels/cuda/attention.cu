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

/* A unit's shared memory. v's rows are padded to whole float4 (zeros), so
 * that softmax . v reads four channels per load; the IF_attn membranes stay
 * here for the whole chunk when they fit (resident), else in global memory. */
typedef struct {
    int n, d, dp, W32;
    int *tok;
    float *expb, *gain, *u, *v, *rowsum, *qf, *kf, *vm;
    uint32_t *qb, *kb;
} unit_shared;

/* The spike counts of one thread over a chunk, in registers (named, never
 * indexed; 32 bits: a thread sees at most a unit's elements per step). */
typedef struct {
    uint32_t q, k, v, q_kept, k_kept, s, s_kept;
} attn_counts;

__host__ __device__ static inline int padded_d(int d) { return (d + 3) / 4 * 4; }

static size_t shared_bytes(int n, int d, int ann, int resident)
{
    size_t N = (size_t)n, D = (size_t)d, DP = (size_t)padded_d(d), W32 = (D + 31) / 32;
    size_t floats = N * DP + 2 * N * N + (resident ? N * N : 0) + (MST_QCFS_LEVELS + 1) + N + (ann ? 2 * N * D : 0);
    return sizeof(float) * floats + sizeof(uint32_t) * 2 * N * W32 + sizeof(int) * N;
}

__device__ static unit_shared carve(char *mem, int n, int d, int ann, int resident)
{
    unit_shared s;
    s.n = n, s.d = d, s.dp = padded_d(d), s.W32 = (d + 31) / 32;
    float *f = (float *)mem; /* v first: 16-byte aligned */
    s.v = f, f += n * s.dp;
    s.u = f, f += n * n;
    s.expb = f, f += n * n;
    s.vm = resident ? f : NULL, f += resident ? n * n : 0;
    s.gain = f, f += MST_QCFS_LEVELS + 1;
    s.rowsum = f, f += n;
    s.qf = ann ? f : NULL, f += ann ? n * d : 0;
    s.kf = ann ? f : NULL, f += ann ? n * d : 0;
    s.qb = (uint32_t *)f;
    s.kb = s.qb + n * s.W32;
    s.tok = (int *)(s.kb + n * s.W32);
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
__device__ static void gather(const mst_attn_args *a, long row0, int h, unit_shared *s, attn_counts *cnt)
{
    int n = s->n, d = s->d, dp = s->dp, C = a->dim, W3 = mst_spike_words(3 * C);
    if (a->mode == MST_MODE_SNN) {
        for (int idx = threadIdx.x; idx < 2 * n * s->W32; idx += blockDim.x) {
            int part = idx / (n * s->W32), i = idx / s->W32 % n, w = idx % s->W32;
            int len = d - 32 * w < 32 ? d - 32 * w : 32;
            const uint64_t *row = a->qkv_bits + (row0 + s->tok[i]) * W3;
            uint32_t f = (uint32_t)mst_bit_field(row, part * C + h * d + 32 * w, len);
            (part ? s->kb : s->qb)[i * s->W32 + w] = f;
            if (part)
                cnt->k += __popc(f);
            else
                cnt->q += __popc(f);
        }
        for (int idx = threadIdx.x; idx < n * dp; idx += blockDim.x) {
            int i = idx / dp, j = idx % dp;
            int bit = j < d && mst_bit(a->qkv_bits + (row0 + s->tok[i]) * W3, 2 * C + h * d + j);
            s->v[idx] = (float)bit;
            cnt->v += bit;
        }
    } else {
        for (int idx = threadIdx.x; idx < 2 * n * d + n * dp; idx += blockDim.x) {
            int part = idx < 2 * n * d ? idx / (n * d) : 2, e = idx - part * n * d;
            int i = part < 2 ? e / d : e / dp, j = part < 2 ? e % d : e % dp;
            float x = j < d ? a->qkv[(row0 + s->tok[i]) * 3 * C + part * C + h * d + j] : 0.0f;
            if (part == 2)
                s->v[i * dp + j] = x;
            else
                (part == 0 ? s->qf : s->kf)[i * d + j] = x;
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

/* Element p = (i, j) of the score matrix: IF_attn (SNN) or QCFS (ANN) of q.k^T * scale. */
__device__ __forceinline__ float score(const mst_attn_args *a, const unit_shared *s, int i, int j, int p, float *vm)
{
    if (a->mode == MST_MODE_SNN) {
        int c = 0;
#pragma unroll 1 /* one word per 32 channels of a head: usually one or two */
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
                              attn_counts *cnt)
{
    uint64_t threshold = a->mask_threshold[2];
    int nn = s->n * s->n, masked = threshold > 0;
    uint64_t base = ((uint64_t)win * a->heads + h) * (uint64_t)nn;
    uint64_t sub = mst_mask_subsequence(a->first_image + (uint64_t)b, a->site_q + 2, (uint32_t)t);
    uint64_t g0 = base / 4, g1 = (base + (uint64_t)nn + 3) / 4;
    for (uint64_t g = g0 + threadIdx.x; g < g1; g += blockDim.x) {
        uint4 r = masked ? draw4(a->seed, sub, g) : make_uint4(0, 0, 0, 0);
        long p0 = (long)(4 * g) - (long)base; /* < 0 in the unit's first group when base is not 4-aligned */
        int first = p0 < 0 ? 0 : (int)p0, i = first / s->n, j = first % s->n; /* one division per group */
#pragma unroll
        for (int e = 0; e < 4; e++) {
            long pe = p0 + e;
            if (pe < 0 || pe >= nn) continue;
            int p = (int)pe;
            float sv = score(a, s, i, j, p, vm);
            if (++j == s->n) j = 0, i++;
            int keep = masked ? mst_mask_keep(lane_of(r, e), threshold) : 1, fired = sv != 0.0f;
            int level = keep * (int)(sv * (float)MST_QCFS_LEVELS + 0.5f);
            cnt->s += fired;
            cnt->s_kept += fired & keep;
            s->u[p] = s->expb[p] * s->gain[level];
        }
    }
}

/* Queries x channels per thread in softmax . v: each float4 of v serves
 * SOFTMAX_Q queries, each u serves 4 channels. */
#define SOFTMAX_Q 2

/* acc += x * v, each product rounded and then added, as the CPU does; with
 * EXACT (SNN: v is 0 or 1, so x * v is exact and the rounding of the add
 * is the only one) as one fused multiply-add, which rounds the same way. */
template <bool EXACT> __device__ __forceinline__ void mac4(float4 *acc, float x, float4 v)
{
    if (EXACT) {
        acc->x = __fmaf_rn(x, v.x, acc->x), acc->y = __fmaf_rn(x, v.y, acc->y);
        acc->z = __fmaf_rn(x, v.z, acc->z), acc->w = __fmaf_rn(x, v.w, acc->w);
    } else {
        acc->x += x * v.x, acc->y += x * v.y, acc->z += x * v.z, acc->w += x * v.w;
    }
}

/* Outputs of SOFTMAX_Q queries from i0 x channels c0..c0+3, each summed as
 * mst_attn_weighted sums it (even keys and odd keys apart, then added). */
template <bool EXACT>
__device__ void weighted_block(const mst_attn_args *a, long row0, int h, const unit_shared *s, int i0, int c0)
{
    const int n = s->n, d = s->d, dp = s->dp, C = a->dim;
    const float *u[SOFTMAX_Q];
#pragma unroll
    for (int q = 0; q < SOFTMAX_Q; q++) u[q] = s->u + (i0 + q < n ? i0 + q : n - 1) * n; /* the tail repeats a row */
    float4 ev[SOFTMAX_Q], od[SOFTMAX_Q];
#pragma unroll
    for (int q = 0; q < SOFTMAX_Q; q++) ev[q] = od[q] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    int j = 0;
    for (; j + 1 < n; j += 2) {
        float4 v0 = *(const float4 *)(s->v + j * dp + c0), v1 = *(const float4 *)(s->v + (j + 1) * dp + c0);
#pragma unroll
        for (int q = 0; q < SOFTMAX_Q; q++) mac4<EXACT>(&ev[q], u[q][j], v0), mac4<EXACT>(&od[q], u[q][j + 1], v1);
    }
    if (j < n) {
        float4 v0 = *(const float4 *)(s->v + j * dp + c0);
#pragma unroll
        for (int q = 0; q < SOFTMAX_Q; q++) mac4<EXACT>(&ev[q], u[q][j], v0);
    }
#pragma unroll
    for (int q = 0; q < SOFTMAX_Q; q++) {
        if (i0 + q >= n) break;
        float o[4] = {ev[q].x + od[q].x, ev[q].y + od[q].y, ev[q].z + od[q].z, ev[q].w + od[q].w};
        float k = a->v_scale / s->rowsum[i0 + q];
        float *dst = a->out + (row0 + s->tok[i0 + q]) * C + h * d + c0;
        for (int e = 0; e < 4 && c0 + e < d; e++) dst[e] = o[e] * k;
    }
}

/* softmax . v in the CPU's order: row sums left to right; each output as
 * mst_attn_weighted sums it. */
__device__ static void softmax_v(const mst_attn_args *a, long row0, int h, unit_shared *s)
{
    const int n = s->n, dp = s->dp, qblocks = (n + SOFTMAX_Q - 1) / SOFTMAX_Q;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float sum = 0.0f;
        for (int j = 0; j < n; j++) sum += s->u[i * n + j];
        s->rowsum[i] = sum;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < qblocks * (dp / 4); idx += blockDim.x) {
        int i0 = idx / (dp / 4) * SOFTMAX_Q, c0 = idx % (dp / 4) * 4;
        if (a->mode == MST_MODE_SNN)
            weighted_block<true>(a, row0, h, s, i0, c0);
        else
            weighted_block<false>(a, row0, h, s, i0, c0);
    }
}

/* Atomics per warp for the unit's counts, once per chunk. */
__device__ static void flush_counts(uint64_t *counts, const attn_counts *c)
{
    unsigned long long x[MST_ATTN_NCOUNTS];
    x[MST_ATTN_Q] = c->q, x[MST_ATTN_K] = c->k, x[MST_ATTN_V] = c->v, x[MST_ATTN_Q_KEPT] = c->q_kept;
    x[MST_ATTN_K_KEPT] = c->k_kept, x[MST_ATTN_S] = c->s, x[MST_ATTN_S_KEPT] = c->s_kept;
#pragma unroll
    for (int k = 0; k < MST_ATTN_NCOUNTS; k++) {
        unsigned long long y = x[k];
        for (int o = 16; o > 0; o >>= 1) y += __shfl_down_sync(0xffffffffu, y, o);
        if ((threadIdx.x & 31) == 0 && y) atomicAdd((unsigned long long *)&counts[k], y);
    }
}

/* The membranes of a unit between global memory and shared memory. */
__device__ static void move_membranes(float *to, const float *from, int nn)
{
    for (int p = threadIdx.x; p < nn; p += blockDim.x) to[p] = from[p];
}

/* RESIDENT: the IF_attn membranes in shared memory (known so at compile
 * time, the score loop addresses them as shared, not generic, memory). */
template <bool RESIDENT> __global__ void window_attention_kernel(mst_attn_args a, int nw)
{
    const int resident = RESIDENT;
    MST_DYNAMIC_SHARED(char, mem);
    int n = a.window * a.window, d = a.dim / a.heads;
    long unit = blockIdx.x;
    int b = (int)(unit / ((long)nw * a.heads)), win = (int)(unit / a.heads % nw), h = (int)(unit % a.heads);
    if (a.keys) { /* a replayed graph: this chunk's images and steps */
        a.first_image = a.keys[0];
        a.t0 = (int)a.keys[1];
    }
    unit_shared s = carve(mem, n, d, a.mode == MST_MODE_ANN, resident);
    float *vm_global = a.v_attn + (((long)b * nw + win) * a.heads + h) * n * n, *vm = resident ? s.vm : vm_global;
    attn_counts cnt = {0, 0, 0, 0, 0, 0, 0};
    unit_constants(&a, win, h, &s);
    if (resident) move_membranes(s.vm, vm_global, n * n);
    __syncthreads();
    for (int t = a.t0; t < a.t0 + a.steps; t++) {
        long row0 = ((long)(t - a.t0) * a.batch + b) * a.res * a.res;
        gather(&a, row0, h, &s, &cnt);
        __syncthreads();
        if (a.mask_threshold[0] || a.mask_threshold[1]) {
            if (a.mask_threshold[0]) mask_qk(&a, b, win, h, t, 0, &s);
            if (a.mask_threshold[1]) mask_qk(&a, b, win, h, t, 1, &s);
            __syncthreads();
        }
        if (a.mode == MST_MODE_SNN)
            for (int idx = threadIdx.x; idx < 2 * n * s.W32; idx += blockDim.x) {
                if (idx < n * s.W32)
                    cnt.q_kept += __popc(s.qb[idx]);
                else
                    cnt.k_kept += __popc(s.kb[idx - n * s.W32]);
            }
        scores(&a, b, win, h, t, vm, &s, &cnt);
        __syncthreads();
        softmax_v(&a, row0, h, &s);
        __syncthreads();
    }
    if (resident) move_membranes(vm_global, s.vm, n * n); /* each thread its own elements: no barrier needed */
    if (a.counts) flush_counts(a.counts, &cnt);
}

/* SNN membranes stay in shared memory for the chunk where they fit. */
static int membranes_resident(const mst_cuda *c, int n, int d, int ann)
{
    return !ann && shared_bytes(n, d, ann, 1) <= (size_t)c->shared_optin;
}

mst_status mst_cuda_window_attention(void *ctx, const mst_attn_args *a, mst_error *err)
{
    mst_cuda *c = (mst_cuda *)ctx;
    int n = a->window * a->window, d = a->dim / a->heads, nw = (a->res / a->window) * (a->res / a->window);
    int ann = a->mode == MST_MODE_ANN, resident = membranes_resident(c, n, d, ann);
    long units = (long)a->batch * nw * a->heads;
    if (units == 0) return MST_OK;
    size_t shared = shared_bytes(n, d, ann, resident);
    if (shared > (size_t)c->shared_optin)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "window attention with window %d and head dim %d needs %zu bytes of "
                        "shared memory; %s has %d", a->window, d, shared, c->name, c->shared_optin);
    if (units > 0x7fffffffL) return mst_fail(err, MST_ERR_UNSUPPORTED, "%ld attention units in one launch", units);
    if (resident)
        MST_LAUNCH(window_attention_kernel<true>, (unsigned)units, 128, shared, c->stream)(*a, nw);
    else
        MST_LAUNCH(window_attention_kernel<false>, (unsigned)units, 128, shared, c->stream)(*a, nw);
    LAUNCH_TRY("window_attention_kernel", err);
    return MST_OK;
}

mst_status mst_cuda_attention_setup(mst_cuda *c, mst_error *err)
{
    if (c->shared_optin > 48 * 1024) {
        CUDA_TRY(cudaFuncSetAttribute(window_attention_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      c->shared_optin),
                 err);
        CUDA_TRY(cudaFuncSetAttribute(window_attention_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      c->shared_optin),
                 err);
    }
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
