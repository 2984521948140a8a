/* Philox draws for the CPU's RSM masks: whole blocks of a subsequence, a
 * vector of blocks at a time. Inlined into each caller's target clones
 * (cpu_vec.h). */
#ifndef MST_CPU_PHILOX_H
#define MST_CPU_PHILOX_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../common/mst_math.h"
#include "cpu_vec.h"

/* Blocks per vector of counters: one 32-bit lane per block, as many lanes
 * as the target's registers hold (wider generic vectors are split into
 * slow sequences, SSE's worst of all). */
#if defined(__AVX512F__)
#define PHILOX_LANES 16
#elif defined(__AVX2__)
#define PHILOX_LANES 8
#else
#define PHILOX_LANES 4
#endif

typedef uint32_t philox_u32 __attribute__((vector_size(4 * PHILOX_LANES), aligned(4)));
typedef uint64_t philox_u64 __attribute__((vector_size(4 * PHILOX_LANES), aligned(4)));

/* The low word of every 64-bit lane times m, as 64-bit products: one
 * unsigned 32 x 32-bit multiply (what a 64-bit multiply, emulated on AVX2
 * and SSE, would do three times over). */
MST_INLINE philox_u64 philox_mul_low(philox_u64 x, uint32_t m)
{
#if defined(__AVX512F__)
    return (philox_u64)_mm512_mul_epu32((__m512i)x, _mm512_set1_epi64(m));
#elif defined(__AVX2__)
    return (philox_u64)_mm256_mul_epu32((__m256i)x, _mm256_set1_epi64x(m));
#else
    return (philox_u64)_mm_mul_epu32((__m128i)x, _mm_set1_epi64x(m));
#endif
}

/* lo = c * m of every lane, *hi its high word: even lanes' and odd lanes'
 * 64-bit products, split back into words. */
MST_INLINE philox_u32 philox_mulhilo(uint32_t m, philox_u32 c, philox_u32 *hi)
{
    philox_u64 w = (philox_u64)c, even = philox_mul_low(w, m), odd = philox_mul_low(w >> 32, m);
    *hi = (philox_u32)((even >> 32) | (odd & ~(uint64_t)0xffffffffu));
    return (philox_u32)((even & 0xffffffffu) | (odd << 32));
}

/* mst_philox_round on every lane: the same words, multipliers and order
 * (test_philox holds these draws to mst_philox_block's). */
MST_INLINE void philox_round(philox_u32 *c0, philox_u32 *c1, philox_u32 *c2, philox_u32 *c3, uint32_t k0, uint32_t k1)
{
    philox_u32 hi0, hi1;
    philox_u32 lo0 = philox_mulhilo(MST_PHILOX_M0, *c0, &hi0), lo1 = philox_mulhilo(MST_PHILOX_M1, *c2, &hi1);
    philox_u32 n0 = hi1 ^ *c1 ^ k0, n2 = hi0 ^ *c3 ^ k1;
    *c0 = n0, *c1 = lo1, *c2 = n2, *c3 = lo0;
}

/* Shuffle indices that interleave the words of two vectors of lanes 0 ..
 * L/2-1 (LO) and L/2 .. L-1 (HI), then pairs of 64-bit lanes likewise (Q0, Q1). */
#if PHILOX_LANES == 16
#define PHILOX_LO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define PHILOX_HI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#define PHILOX_Q0 0, 8, 1, 9, 2, 10, 3, 11
#define PHILOX_Q1 4, 12, 5, 13, 6, 14, 7, 15
#elif PHILOX_LANES == 8
#define PHILOX_LO 0, 8, 1, 9, 2, 10, 3, 11
#define PHILOX_HI 4, 12, 5, 13, 6, 14, 7, 15
#define PHILOX_Q0 0, 4, 1, 5
#define PHILOX_Q1 2, 6, 3, 7
#else
#define PHILOX_LO 0, 4, 1, 5
#define PHILOX_HI 2, 6, 3, 7
#define PHILOX_Q0 0, 2
#define PHILOX_Q1 1, 3
#endif
/* a two-vector shuffle in GCC's spelling or clang's (the fuzz build's) */
#if defined(__clang__)
#define PHILOX_SHUFFLE(type, a, b, idx) ((type)__builtin_shufflevector(a, b, idx))
#else
#define PHILOX_SHUFFLE(type, a, b, idx) ((type)__builtin_shuffle(a, b, (type){idx}))
#endif

/* Lanes' blocks (c0[l], c1[l], c2[l], c3[l]) one after the other at out,
 * blocks of lanes 0 .. n-1 (n <= PHILOX_LANES): interleaved by shuffles and
 * stored as whole vectors, not extracted a lane at a time. */
MST_INLINE void philox_store(philox_u32 c0, philox_u32 c1, philox_u32 c2, philox_u32 c3, int n, uint32_t *out)
{
    /* each lane's (c0, c1) and (c2, c3) as 64-bit lanes, then the two side by side */
    philox_u64 a_lo = (philox_u64)PHILOX_SHUFFLE(philox_u32, c0, c1, PHILOX_LO);
    philox_u64 a_hi = (philox_u64)PHILOX_SHUFFLE(philox_u32, c0, c1, PHILOX_HI);
    philox_u64 b_lo = (philox_u64)PHILOX_SHUFFLE(philox_u32, c2, c3, PHILOX_LO);
    philox_u64 b_hi = (philox_u64)PHILOX_SHUFFLE(philox_u32, c2, c3, PHILOX_HI);
    philox_u32 v[4] = {(philox_u32)PHILOX_SHUFFLE(philox_u64, a_lo, b_lo, PHILOX_Q0),
                       (philox_u32)PHILOX_SHUFFLE(philox_u64, a_lo, b_lo, PHILOX_Q1),
                       (philox_u32)PHILOX_SHUFFLE(philox_u64, a_hi, b_hi, PHILOX_Q0),
                       (philox_u32)PHILOX_SHUFFLE(philox_u64, a_hi, b_hi, PHILOX_Q1)};
    if (n == PHILOX_LANES) {
        for (int i = 0; i < 4; i++) *(philox_u32 *)(out + i * PHILOX_LANES) = v[i];
    } else {
        memcpy(out, v, sizeof(uint32_t) * 4 * (size_t)n);
    }
}

/* Whole Philox blocks first .. first+count-1 of one subsequence, a vector
 * of blocks at a time. */
MST_INLINE void philox_blocks(uint64_t seed, uint64_t sub, uint64_t first, long count, uint32_t *out)
{
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (long i0 = 0; i0 < count; i0 += PHILOX_LANES) {
        philox_u32 c0 = {0}, c1 = {0}, c2 = (philox_u32){0} + (uint32_t)sub, c3 = (philox_u32){0} + (uint32_t)(sub >> 32);
        for (int l = 0; l < PHILOX_LANES; l++) {
            uint64_t b = first + (uint64_t)(i0 + l);
            c0[l] = (uint32_t)b, c1[l] = (uint32_t)(b >> 32);
        }
        for (int r = 0; r < 10; r++) philox_round(&c0, &c1, &c2, &c3, mst_philox_key0(k0, r), mst_philox_key1(k1, r));
        philox_store(c0, c1, c2, c3, count - i0 < PHILOX_LANES ? (int)(count - i0) : PHILOX_LANES, out + 4 * i0);
    }
}

/* Returns r with r[i] = curand() number offset+i of one subsequence, for
 * i < count: whole Philox blocks are written to buf (it holds count + 6),
 * r is where the first number fell in them. */
MST_INLINE const uint32_t *philox_draw(uint64_t seed, uint64_t sub, uint64_t offset, long count, uint32_t *buf)
{
    long skip = (long)(offset & 3);
    philox_blocks(seed, sub, offset >> 2, (skip + count + 3) / 4, buf);
    return buf + skip;
}

/* The RSM keep bits of len <= 64 elements from their raw numbers: bit j set
 * where raw[j] keeps its element (mst_mask_keep: raw >= threshold, a 64-bit
 * threshold in [0, 2^32]). A compare and a move of the mask bits per vector,
 * the widest first, as pack_row does; unsigned 32-bit order by comparing
 * with the sign bits flipped where the target has no unsigned compare. */
MST_INLINE uint64_t keep_bits(const uint32_t *raw, int len, uint64_t threshold)
{
    if (threshold > UINT32_MAX) return 0;
    uint32_t th = (uint32_t)threshold;
    uint64_t keep = 0;
    int j = 0;
#if defined(__AVX512F__)
    for (; j + 16 <= len; j += 16)
        keep |= (uint64_t)_mm512_cmpge_epu32_mask(_mm512_loadu_si512(raw + j), _mm512_set1_epi32((int)th)) << j;
#endif
#if defined(__AVX2__)
    /* raw >= th  <=>  !(th > raw), signed after flipping the sign bits */
    __m256i flip8 = _mm256_set1_epi32(INT32_MIN), th8 = _mm256_xor_si256(_mm256_set1_epi32((int)th), flip8);
    for (; j + 8 <= len; j += 8) {
        __m256i r = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(raw + j)), flip8);
        keep |= (uint64_t)(~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(th8, r))) & 0xff) << j;
    }
#endif
#if defined(__SSE2__)
    __m128i flip4 = _mm_set1_epi32(INT32_MIN), th4 = _mm_xor_si128(_mm_set1_epi32((int)th), flip4);
    for (; j + 4 <= len; j += 4) {
        __m128i r = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(raw + j)), flip4);
        keep |= (uint64_t)(~_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32(th4, r))) & 0xf) << j;
    }
#endif
    for (; j < len; j++) keep |= (uint64_t)mst_mask_keep(raw[j], threshold) << j;
    return keep;
}

#endif
