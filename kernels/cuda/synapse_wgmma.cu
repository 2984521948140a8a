/* The spike-fed synapse on Hopper's warpgroup MMA (fp16/bf16, opt-in with
 * --fused-synapse=wgmma): one warpgroup (128 threads) per block holds
 * WG_TOKENS tokens x 16 steps as two m64 tiles against 64 output channels.
 *
 * - Weights: a copy laid out as the tiles wgmma reads (linear.cu,
 *   MST_WEIGHT_WGMMA_TILES: 64 channels x 64 inputs per tile, 8 x 8 core
 *   matrices, no swizzle), so that each ring slot is one contiguous 8 KiB
 *   block brought by the bulk-copy engine (cp.async.bulk, the TMA unit's 1-D
 *   form, which needs no tensor map) and signalled on an mbarrier. With at
 *   most WG_SLOTS x 64 inputs (K <= 512: every qkv, proj and fc1 of Swin-T,
 *   and fc2 of stages 1-2) the weights stay resident for the block's whole
 *   life; larger K streams them through the ring.
 * - Spikes: each thread expands its own A fragments straight from the packed
 *   spike words (2 bits per register, 0 or 1.0 in the operand type): no
 *   operand buffer, no shared-memory copy.
 * - Epilogue: the fp32 sums go through shared memory once, and the IF scan
 *   walks the 16 steps with the membranes in registers; only spike bits (or
 *   scaled spikes) and one count per block leave the kernel.
 *
 * Where the code is compiled for sm_90a, the MMA, the bulk copies and the
 * barriers are the PTX instructions. Compiled for the host (the CUDA
 * emulator of tests/cuda_emu) the same kernel runs a twin of each: the MMA
 * from the same register fragments and the same shared-memory descriptor,
 * decoded as the PTX ISA defines it, so the fragment ownership, the tile
 * layout and the epilogue are tested against the two-kernel path without a
 * GPU. The file is built for sm_90a only (CMakeLists.txt): on another GPU
 * the backend refuses the option before any launch. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <string.h>

#include "../common/mst_bits.h"
#include "cuda_backend.h"
#include "if_scan.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MST_WGMMA_PTX 1
#endif

#define WG_BN 64     /* output channels per block */
#define WG_BK 64     /* inputs per ring slot */
#define WG_SLOTS 8   /* 64 KiB of weights in flight or resident */
#define WG_TOKENS 8  /* two m64 tiles of 4 tokens x 16 steps */
#define WG_ZLD (WG_BN + 4)
#define WG_TILE_BYTES (WG_BN * WG_BK * 2)
#define WG_THREADS 128

typedef struct {
    const uint64_t *x; /* [steps][R] rows of packed input spikes */
    const char *w;     /* tiles: [N/64][K/64] of WG_TILE_BYTES */
    const float *bias; /* [N] or NULL */
    float *v;          /* [R][N] membranes */
    uint32_t *bits;    /* [steps][R] rows of packed spikes out (32-bit halves), or NULL */
    float *out;        /* [steps][R][N] spikes x out_scale when bits is NULL */
    mst_residual_fold fold; /* or into the residual stream, when out is NULL too */
    unsigned long long *count;
    float out_scale;
    uint64_t last_mask; /* the inputs of the last spike word (K % 64 of them, or all) */
    long R;
    int steps, K, N, KS;
} wg_args;

typedef struct {
    char *slots;   /* WG_SLOTS weight tiles */
    float *z;      /* [WG_TOKENS x 16][WG_ZLD] sums of one tile */
    uint64_t *bar; /* one mbarrier per slot */
    float *a;      /* the MMA twin's copy of the A tile */
} wg_shared;

static size_t wg_shared_bytes(void)
{
    return (size_t)WG_SLOTS * WG_TILE_BYTES + sizeof(float) * WG_TOKENS * 16 * WG_ZLD + 8 * WG_SLOTS +
           sizeof(float) * 64 * 16;
}

__device__ static wg_shared wg_carve(char *mem)
{
    wg_shared s;
    s.slots = mem, mem += (size_t)WG_SLOTS * WG_TILE_BYTES;
    s.z = (float *)mem, mem += sizeof(float) * WG_TOKENS * 16 * WG_ZLD;
    s.bar = (uint64_t *)mem, mem += 8 * WG_SLOTS;
    s.a = (float *)mem;
    return s;
}

/* The shared-memory address an instruction takes: the real one on the GPU,
 * the offset from the block's shared memory in the twin. */
__device__ __forceinline__ uint32_t wg_smem(const void *p, const char *base)
{
#ifdef MST_WGMMA_PTX
    (void)base;
    return (uint32_t)__cvta_generic_to_shared(p);
#else
    return (uint32_t)((const char *)p - base);
#endif
}

/* The matrix descriptor of B (PTX ISA, "Matrix Descriptor Format"): K-major,
 * no swizzle: core matrices of 8 channels x 16 bytes, the next one along K
 * (leading byte offset) 128 bytes on, the next 8 channels (stride byte
 * offset) 1024 bytes on. */
#define WG_LBO 128u
#define WG_SBO 1024u
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr)
{
    return (uint64_t)((addr >> 4) & 0x3fffu) | (uint64_t)(WG_LBO >> 4) << 16 | (uint64_t)(WG_SBO >> 4) << 32;
}

/* ---- barriers and bulk copies ------------------------------------------- */

__device__ __forceinline__ void wg_bar_init(uint64_t *bar, const char *base)
{
#ifdef MST_WGMMA_PTX
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(wg_smem(bar, base)) : "memory");
#else
    *bar = 0, (void)base;
#endif
}

__device__ __forceinline__ void wg_fence_init(void)
{
#ifdef MST_WGMMA_PTX
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

/* bytes from global src into shared dst, completing on bar */
__device__ __forceinline__ void wg_copy(void *dst, const void *src, uint32_t bytes, uint64_t *bar, const char *base)
{
#ifdef MST_WGMMA_PTX
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(wg_smem(bar, base)), "r"(bytes)
                 : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     wg_smem(dst, base)),
                 "l"(src), "r"(bytes), "r"(wg_smem(bar, base))
                 : "memory");
#else
    /* the twin copies at once; the block barriers between this thread's copy
       and every read of the slot order it */
    memcpy(dst, src, bytes), (void)bar, (void)base;
#endif
}

__device__ __forceinline__ void wg_wait(uint64_t *bar, uint32_t phase, const char *base)
{
#ifdef MST_WGMMA_PTX
    asm volatile("{\n"
                 ".reg .pred done;\n"
                 "WG_WAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WG_WAIT_%=;\n"
                 "}" ::"r"(wg_smem(bar, base)),
                 "r"(phase)
                 : "memory");
#else
    (void)bar, (void)phase, (void)base;
#endif
}

/* ---- the MMA ------------------------------------------------------------ */

__device__ __forceinline__ void wg_fence(void)
{
#ifdef MST_WGMMA_PTX
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}

__device__ __forceinline__ void wg_commit_wait(void)
{
#ifdef MST_WGMMA_PTX
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
#endif
}

#ifdef MST_WGMMA_PTX
#define WG_D8(m, i)                                                                                                   \
    "+f"(d[m][i]), "+f"(d[m][i + 1]), "+f"(d[m][i + 2]), "+f"(d[m][i + 3]), "+f"(d[m][i + 4]), "+f"(d[m][i + 5]),       \
        "+f"(d[m][i + 6]), "+f"(d[m][i + 7])
#define WG_A4(m, kk) "r"(a[m][kk][0]), "r"(a[m][kk][1]), "r"(a[m][kk][2]), "r"(a[m][kk][3])
/* The slot's eight MMAs (2 tiles x 4 groups of 16 inputs) in one asm
 * statement: all 32 A registers stay live until the last one issues, so
 * ptxas need not wait for each MMA before reusing its inputs. */
#define WG_SLOT(type)                                                                                                 \
    asm volatile("{\n.reg .pred acc;\nsetp.ne.b32 acc, %100, 0;\n"                                                   \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%64, %65, %66, %67}, %96, acc, 1, 1, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type " {%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%80, %81, %82, %83}, %96, acc, 1, 1, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%68, %69, %70, %71}, %97, acc, 1, 1, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type " {%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%84, %85, %86, %87}, %97, acc, 1, 1, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%72, %73, %74, %75}, %98, acc, 1, 1, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type " {%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%88, %89, %90, %91}, %98, acc, 1, 1, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%76, %77, %78, %79}, %99, acc, 1, 1, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type " {%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%92, %93, %94, %95}, %99, acc, 1, 1, 0;\n" \
                 "}"                                                                                                  \
                 : WG_D8(0, 0), WG_D8(0, 8), WG_D8(0, 16), WG_D8(0, 24), WG_D8(1, 0), WG_D8(1, 8), WG_D8(1, 16),   \
                   WG_D8(1, 24)                                                                                       \
                 : WG_A4(0, 0), WG_A4(0, 1), WG_A4(0, 2), WG_A4(0, 3), WG_A4(1, 0), WG_A4(1, 1), WG_A4(1, 2),       \
                   WG_A4(1, 3), "l"(desc[0]), "l"(desc[1]), "l"(desc[2]), "l"(desc[3]), "r"(1)                        \
                 : "memory")
#endif

__device__ __forceinline__ float wg_value(__half x) { return __half2float(x); }
__device__ __forceinline__ float wg_value(__nv_bfloat16 x) { return __bfloat162float(x); }

/* The A element of register q, half e of this thread (PTX ISA, wgmma
 * "Register Fragments" for 16-bit A): rows lane/4 and +8, inputs
 * 2 (lane % 4) + e and +8, of the warp's 16 rows. */
__device__ __forceinline__ int wg_a_row(int lane, int q) { return lane / 4 + 8 * (q & 1); }
__device__ __forceinline__ int wg_a_col(int lane, int q, int e) { return 2 * (lane % 4) + e + 8 * (q >> 1); }
/* The accumulator d[i] of this thread: rows lane/4 and +8, channels in pairs. */
__device__ __forceinline__ int wg_d_row(int lane, int i) { return lane / 4 + 8 * ((i >> 1) & 1); }
__device__ __forceinline__ int wg_d_col(int lane, int i) { return 8 * (i >> 2) + 2 * (lane & 3) + (i & 1); }

/* d[tile m][64 x 64] += A[m][64 x 64 inputs] B[64 x 64]: A from each warp's
 * registers, B through desc[kk] for inputs 16 kk... Every thread of the
 * warpgroup calls it. */
template <typename T>
__device__ __forceinline__ void wg_mma_slot(float (&d)[2][32], const uint32_t (&a)[2][4][4], const uint64_t (&desc)[4],
                                            const wg_shared *s, const char *base)
{
#ifdef MST_WGMMA_PTX
    (void)s, (void)base;
    if (mst_operand_one<T>::bits == mst_operand_one<__nv_bfloat16>::bits)
        WG_SLOT("bf16");
    else
        WG_SLOT("f16");
#else
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    for (int kk = 0; kk < 4; kk++)
        for (int m = 0; m < 2; m++) {
            for (int q = 0; q < 4; q++)
                for (int e = 0; e < 2; e++) {
                    uint32_t raw = a[m][kk][q] >> (16 * e) & 0xffffu;
                    s->a[(16 * warp + wg_a_row(lane, q)) * 16 + wg_a_col(lane, q, e)] = raw ? 1.0f : 0.0f; /* 0 or 1 */
                }
            __syncthreads();
            uint32_t start = (uint32_t)(desc[kk] & 0x3fffu) << 4, lbo = (uint32_t)(desc[kk] >> 16 & 0x3fffu) << 4,
                     sbo = (uint32_t)(desc[kk] >> 32 & 0x3fffu) << 4;
            for (int i = 0; i < 32; i++) {
                int row = 16 * warp + wg_d_row(lane, i), n = wg_d_col(lane, i);
                float acc = d[m][i];
                for (int k = 0; k < 16; k++) {
                    uint32_t at = start + (uint32_t)(n / 8) * sbo + (uint32_t)(n % 8) * 16 + (uint32_t)(k / 8) * lbo +
                                  (k % 8) * 2;
                    acc += s->a[row * 16 + k] * wg_value(*(const T *)(base + at));
                }
                d[m][i] = acc;
            }
            __syncthreads(); /* s->a is rewritten next */
        }
#endif
}

/* ---- the kernel ----------------------------------------------------------- */

/* PTX prmt.b32 (default mode): each byte of the result is byte sel & 7 of
 * {b, a}, or, where sel's nibble has bit 3 set, that byte's sign bit
 * replicated over all 8 bits. */
__device__ __forceinline__ uint32_t wg_prmt(uint32_t a, uint32_t b, uint32_t sel)
{
#ifdef MST_WGMMA_PTX
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
#else
    uint64_t both = (uint64_t)b << 32 | a;
    uint32_t d = 0;
    for (int i = 0; i < 4; i++) {
        uint32_t nib = sel >> (4 * i) & 0xfu, byte = (uint32_t)(both >> (8 * (nib & 7u))) & 0xffu;
        if (nib & 8u) byte = byte & 0x80u ? 0xffu : 0u;
        d |= byte << (8 * i);
    }
    return d;
#endif
}

/* Four A registers from z, whose byte j holds a pair of spikes in its two
 * low bits: register j is (bit 8j ? 1.0 : 0) | (bit 8j+1 ? 1.0 : 0) << 16 in
 * the operand type. Shifted so that each spike is a byte's sign bit, one
 * prmt spreads it over its byte and one AND leaves 1.0 where it was set: two
 * instructions a register. */
__device__ __forceinline__ void wg_expand4(uint32_t z, uint32_t one, uint32_t (&reg)[4])
{
    uint32_t lo = z << 7, hi = z << 6, mask = one | one << 16;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        uint32_t sel = (8u | j) | (8u | j) << 4 | (12u | j) << 8 | (12u | j) << 12;
        reg[j] = wg_prmt(lo, hi, sel) & mask;
    }
}

/* The spike words of token r at step t (NULL outside). */
__device__ __forceinline__ const uint64_t *wg_row(const wg_args *p, long r, int t)
{
    return r < p->R && t < p->steps ? p->x + ((long)t * p->R + r) * p->KS : NULL;
}

/* Word ks of a row (inputs 64 ks..), zeros past K and outside. */
__device__ __forceinline__ uint64_t wg_word(const wg_args *p, const uint64_t *row, int ks)
{
    uint64_t w = row ? row[ks] : 0;
    return ks == p->KS - 1 ? w & p->last_mask : w;
}

/* Weight tile ks of this block's channels into a slot. */
__device__ __forceinline__ void wg_issue(const wg_args *p, const wg_shared *s, int ks, int slot, const char *base)
{
    const char *src = p->w + ((size_t)blockIdx.y * p->KS + ks) * WG_TILE_BYTES;
    wg_copy(s->slots + (size_t)slot * WG_TILE_BYTES, src, WG_TILE_BYTES, &s->bar[slot], base);
}

/* The sums of tokens r0.. over steps t0..t0+15, all K, into d. */
template <typename T>
__device__ void wg_tile_sums(const wg_args *p, const wg_shared *s, long r0, int t0, long *L, long loads, int stationary,
                             const char *base, float (&d)[2][32])
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const uint32_t one = mst_operand_one<T>::bits;
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < 32; i++) d[m][i] = 0.0f;
    const uint64_t *rows[2][2]; /* [tile m][steps lane/4, +8]: warp w holds token 4m + w */
#pragma unroll
    for (int m = 0; m < 2; m++)
        for (int h = 0; h < 2; h++) rows[m][h] = wg_row(p, r0 + 4 * m + warp, t0 + lane / 4 + 8 * h);
    for (int ks = 0; ks < p->KS; ks++, (*L)++) {
        int slot = stationary ? ks : (int)(*L % WG_SLOTS);
        uint32_t phase = stationary ? 0u : (uint32_t)(*L / WG_SLOTS & 1);
        /* a[m][kk]: inputs 16 kk + 2 (lane % 4) + {0, 1} and + 8, rows lane/4 and + 8 */
        uint32_t a[2][4][4];
#pragma unroll
        for (int m = 0; m < 2; m++) {
            int sh = 2 * (lane % 4);
            uint64_t lo = wg_word(p, rows[m][0], ks) >> sh, hi = wg_word(p, rows[m][1], ks) >> sh;
            uint32_t r[4][4]; /* [row lane/4: inputs 0-31, 32-63; row + 8: 0-31, 32-63][byte] */
            wg_expand4((uint32_t)lo, one, r[0]), wg_expand4((uint32_t)(lo >> 32), one, r[1]);
            wg_expand4((uint32_t)hi, one, r[2]), wg_expand4((uint32_t)(hi >> 32), one, r[3]);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) { /* byte 2 (kk % 2): inputs 16 kk.., the next byte: 16 kk + 8.. */
                int half = kk / 2, b = 2 * (kk % 2);
                a[m][kk][0] = r[half][b], a[m][kk][1] = r[2 + half][b];
                a[m][kk][2] = r[half][b + 1], a[m][kk][3] = r[2 + half][b + 1];
            }
        }
        wg_wait(&s->bar[slot], phase, base);
        wg_fence();
        const char *tile = s->slots + (size_t)slot * WG_TILE_BYTES;
        uint64_t desc[4]; /* inputs 16 kk..: core matrices 2 kk and 2 kk + 1 */
        for (int kk = 0; kk < 4; kk++) desc[kk] = wg_desc(wg_smem(tile + 2 * kk * 128, base));
        wg_mma_slot<T>(d, a, desc, s, base);
        wg_commit_wait();
        if (!stationary) { /* the slot is read: refill it with the load WG_SLOTS on */
            __syncthreads();
            if (threadIdx.x == 0 && *L + WG_SLOTS < loads) wg_issue(p, s, (ks + WG_SLOTS) % p->KS, slot, base);
        }
    }
}

/* IF over the tile's 16 steps: thread -> channel 32 (warp % 2) + lane of
 * tokens 2q + warp / 2, so that a warp's ballot is one 32-bit half word. */
/* The IF membranes of one token group: this synapse's and, folding, the
 * next site's (thread -> channel 32 (warp % 2) + lane of tokens 2q + warp / 2). */
typedef struct {
    float v[4], v2[4];
} wg_membranes;

template <int OUT> __device__ void wg_membranes_move(const wg_args *p, long r0, wg_membranes *m, bool store)
{
    const int warp = threadIdx.x / 32, c = blockIdx.y * WG_BN + 32 * (warp & 1) + (threadIdx.x & 31);
#pragma unroll
    for (int q = 0; q < 4; q++) {
        long r = r0 + 2 * q + warp / 2;
        bool live = r < p->R && c < p->N;
        float *v = live ? p->v + r * p->N + c : NULL, *v2 = live && OUT == MST_IF_FOLD_NEXT ? p->fold.next.v + r * p->N + c : NULL;
        if (store) {
            if (v) *v = m->v[q];
            if (v2) *v2 = m->v2[q];
        } else {
            m->v[q] = v ? *v : 0.0f, m->v2[q] = v2 ? *v2 : 0.0f;
        }
    }
}

template <int OUT>
__device__ void wg_epilogue(const wg_args *p, const wg_shared *s, long r0, int t0, const float (&d)[2][32],
                            wg_membranes *mem, float bias, unsigned long long *fired, unsigned long long *next_fired)
{
    const bool ballots = OUT == MST_IF_BITS || OUT == MST_IF_FOLD_NEXT;
    uint32_t nf = 0, nnf = 0; /* this tile's spikes: 32 bits, added to the totals once */
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, col = 32 * (warp & 1) + lane;
    const int c = blockIdx.y * WG_BN + col;
    const long W32 = 2 * mst_spike_words(p->N);
    const bool live_c = c < p->N;
    const mst_cuda_fold_channel nch = mst_cuda_fold_channel_of(&p->fold.next, c, OUT == MST_IF_FOLD_NEXT && live_c);
    const float nsc = nch.scale, nsh = nch.shift; /* 1 and 0 where the next site has no affine */
    uint32_t *words = OUT == MST_IF_BITS ? p->bits : OUT == MST_IF_FOLD_NEXT ? (uint32_t *)p->fold.next.bits : NULL;
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < 32; i++)
            s->z[((4 * m + warp) * 16 + wg_d_row(lane, i)) * WG_ZLD + wg_d_col(lane, i)] = d[m][i];
    __syncthreads();
#pragma unroll /* v[q] stays in registers only with q known at compile time */
    for (int q = 0; q < 4; q++) {
        int j = 2 * q + warp / 2;
        long r = r0 + j;
        bool live = live_c && r < p->R;
        const float *z = s->z + j * 16 * WG_ZLD + col;
        uint32_t mine = 0; /* lane st keeps step st's ballot: one store per lane after the walk */
        float *out = OUT != MST_IF_BITS && live ? (OUT == MST_IF_FLOATS ? p->out : p->fold.x) + ((long)t0 * p->R + r) * p->N + c
                                                : NULL;
        /* the BatchNorm after the residual add, of this thread's channel */
        /* (an identity affine where there is none: this path is bf16 only, held
           to top-1 agreement, and needs no branch per step on its arguments) */
        const float fsc = p->fold.scale && live_c ? p->fold.scale[c] : 1.0f;
        const float fsh = p->fold.scale && live_c ? p->fold.shift[c] : 0.0f;
        const long ostep = p->R * p->N;
        int st = 0;
#pragma unroll 4 /* not 16: the tile loop stays small enough to keep its registers */
        for (; st < 16 && t0 + st < p->steps; st++) {
            float u = z[st * WG_ZLD];
            u = u + bias; /* 0 where the layer has none */
            /* every lane steps (padding lanes' membranes are never stored): no branch */
            float spike = mst_if_step(&mem->v[q], u);
            spike = live ? spike : 0.0f;
            if (OUT != MST_IF_BITS) {
                nf += spike != 0.0f;
                if (out) {
                    float x = OUT == MST_IF_FLOATS ? spike * p->out_scale
                                                   : mst_residual_bn(*out, spike * p->out_scale, p->fold.lam, 1, fsc, fsh);
                    *out = x;
                    out += ostep;
                    /* the IF site that reads the new x (sc2, the next block's sc1) */
                    if (OUT == MST_IF_FOLD_NEXT) spike = mst_if_step(&mem->v2[q], x * nsc + nsh);
                }
            }
            if (ballots) {
                unsigned word = __ballot_sync(0xffffffffu, spike != 0.0f);
                mine = lane == st ? word : mine;
            }
        }
        if (ballots && lane < st && r < p->R) {
            words[((long)(t0 + lane) * p->R + r) * W32 + blockIdx.y * 2 + (warp & 1)] = mine;
            if (OUT == MST_IF_BITS)
                nf += __popc(mine);
            else
                nnf += __popc(mine);
        }
    }
    *fired += nf, *next_fired += nnf;
    __syncthreads(); /* z is rewritten next */
}

template <typename T, int OUT> __global__ void __launch_bounds__(WG_THREADS) synapse_wgmma_kernel(wg_args p)
{
    MST_DYNAMIC_SHARED(char, mem);
    const wg_shared s = wg_carve(mem);
    const long groups = (p.R + WG_TOKENS - 1) / WG_TOKENS;
    const long mine = groups > (long)blockIdx.x ? (groups - blockIdx.x + gridDim.x - 1) / gridDim.x : 0;
    const int stationary = p.KS <= WG_SLOTS, tiles = (p.steps + 15) / 16;
    const long loads = stationary ? p.KS : mine * tiles * p.KS;
    if (threadIdx.x == 0) {
        for (int i = 0; i < WG_SLOTS; i++) wg_bar_init(&s.bar[i], mem);
        wg_fence_init();
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int L = 0; L < loads && L < WG_SLOTS; L++) wg_issue(&p, &s, L % p.KS, L, mem);
    const int warp = threadIdx.x / 32, c = blockIdx.y * WG_BN + 32 * (warp & 1) + (threadIdx.x & 31);
    const float bias = p.bias && c < p.N ? p.bias[c] : 0.0f;
    unsigned long long fired = 0, next_fired = 0;
    long L = 0;
    for (long g = blockIdx.x; g < groups; g += gridDim.x) {
        long r0 = g * WG_TOKENS;
        wg_membranes m;
        float d[2][32];
        wg_membranes_move<OUT>(&p, r0, &m, false);
        for (int t0 = 0; t0 < p.steps; t0 += 16) {
            wg_tile_sums<T>(&p, &s, r0, t0, &L, loads, stationary, mem, d);
            wg_epilogue<OUT>(&p, &s, r0, t0, d, &m, bias, &fired, &next_fired);
        }
        wg_membranes_move<OUT>(&p, r0, &m, true);
    }
    mst_cuda_count_block(p.count, fired);
    if (OUT == MST_IF_FOLD_NEXT) {
        __syncthreads(); /* the block sum's shared words are reused */
        mst_cuda_count_block(mst_cuda_counter(p.fold.next.count), next_fired);
    }
}

/* [fp16, bf16][where the spikes go: mst_cuda_if_output] */
#define WG_KERNELS(T)                                                                                                 \
    {synapse_wgmma_kernel<T, MST_IF_BITS>, synapse_wgmma_kernel<T, MST_IF_FLOATS>, synapse_wgmma_kernel<T, MST_IF_FOLD>, \
     synapse_wgmma_kernel<T, MST_IF_FOLD_NEXT>}
static void (*const wg_kernels[2][4])(wg_args) = {WG_KERNELS(__half), WG_KERNELS(__nv_bfloat16)};
#undef WG_KERNELS

size_t mst_cuda_wgmma_weight_bytes(int K, int N) { return 2 * (size_t)((K + 63) / 64 * 64) * ((N + 63) / 64 * 64); }

mst_status mst_cuda_wgmma_setup(mst_cuda *c, mst_error *err)
{
    if (c->precision == MST_PRECISION_FP32) return MST_OK;
    size_t need = wg_shared_bytes();
    if (need > (size_t)c->shared_optin)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "the wgmma synapse needs %zu bytes of shared memory per block; %s has %d",
                        need, c->name, c->shared_optin);
    for (int i = 0; i < 8; i++)
        CUDA_TRY(cudaFuncSetAttribute(wg_kernels[i / 4][i % 4], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)need), err);
    return MST_OK;
}

mst_status mst_cuda_synapse_wgmma(mst_cuda *c, const mst_synapse_args *a, mst_error *err)
{
    const long R = a->R;
    const int K = a->K, N = a->N, steps = a->steps;
    if (R == 0 || N == 0 || steps == 0) return MST_OK;
    int KS = mst_spike_words(K), NT = (N + WG_BN - 1) / WG_BN;
    const void *tiles = NULL;
    MST_TRY(mst_cuda_half_weight_get(c, a->w, K, N, KS * WG_BK, NT * WG_BN, MST_WEIGHT_WGMMA_TILES, &tiles, err));
    uint64_t last = K % 64 ? (1ull << (K % 64)) - 1ull : ~0ull;
    wg_args p = {a->x,     (const char *)tiles, a->b, a->v, (uint32_t *)a->bits, a->out, a->fold, mst_cuda_counter(a->count),
                 a->out_scale, last, R, steps, K, N, KS};
    long groups = (R + WG_TOKENS - 1) / WG_TOKENS, want = (2L * c->sms + NT - 1) / NT; /* two blocks per SM */
    long gx = groups < want ? groups : want;
    if (NT > 65535) return mst_fail(err, MST_ERR_UNSUPPORTED, "wgmma synapse with %d output channels", N);
    dim3 grid((unsigned)(gx > 0 ? gx : 1), (unsigned)NT);
    int out = mst_cuda_if_output(a->bits, a->out, &a->fold);
    if (out >= MST_IF_FOLD && !a->fold.x) return mst_fail(err, MST_ERR_ARG, "synapse with nowhere to put its spikes");
    MST_LAUNCH(wg_kernels[c->precision == MST_PRECISION_BF16][out], grid, WG_THREADS, wg_shared_bytes(), c->stream)(p);
    LAUNCH_TRY("synapse_wgmma_kernel", err);
    return MST_OK;
}
