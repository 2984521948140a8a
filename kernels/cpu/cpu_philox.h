/* Philox draws for the CPU's RSM masks: whole blocks of a subsequence, many
 * blocks at a time so that the rounds vectorise. Inlined into each caller's
 * target clones (cpu_vec.h). */
#ifndef MST_CPU_PHILOX_H
#define MST_CPU_PHILOX_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../common/mst_math.h"
#include "cpu_vec.h"

#define PHILOX_LANES 16

/* Whole Philox blocks first .. first+count-1 of one subsequence, PHILOX_LANES at a
 * time so the rounds vectorise across blocks. */
MST_INLINE void philox_blocks(uint64_t seed, uint64_t sub, uint64_t first, long count, uint32_t *out)
{
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (long i0 = 0; i0 < count; i0 += PHILOX_LANES) {
        uint32_t c0[PHILOX_LANES], c1[PHILOX_LANES], c2[PHILOX_LANES], c3[PHILOX_LANES];
        for (int l = 0; l < PHILOX_LANES; l++) {
            uint64_t b = first + (uint64_t)(i0 + l);
            c0[l] = (uint32_t)b, c1[l] = (uint32_t)(b >> 32), c2[l] = (uint32_t)sub, c3[l] = (uint32_t)(sub >> 32);
        }
        for (int r = 0; r < 10; r++)
            for (int l = 0; l < PHILOX_LANES; l++)
                mst_philox_round(&c0[l], &c1[l], &c2[l], &c3[l], mst_philox_key0(k0, r), mst_philox_key1(k1, r));
        for (int l = 0; l < PHILOX_LANES && i0 + l < count; l++) {
            uint32_t *o = out + 4 * (i0 + l);
            o[0] = c0[l], o[1] = c1[l], o[2] = c2[l], o[3] = c3[l];
        }
    }
}

/* raw[i] = curand() number offset+i of one subsequence, for i < count
 * (raw holds count + 6: whole Philox blocks are written, then shifted). */
MST_INLINE void philox_draw(uint64_t seed, uint64_t sub, uint64_t offset, long count, uint32_t *raw)
{
    long skip = (long)(offset & 3);
    philox_blocks(seed, sub, offset >> 2, (skip + count + 3) / 4, raw);
    if (skip) memmove(raw, raw + skip, sizeof(uint32_t) * (size_t)count);
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
