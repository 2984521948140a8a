/* Philox draws for the CPU's RSM masks: whole blocks of a subsequence, many
 * blocks at a time so that the rounds vectorise. Inlined into each caller's
 * target clones (cpu_vec.h). */
#ifndef MST_CPU_PHILOX_H
#define MST_CPU_PHILOX_H

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
 * where raw[j] keeps its element (mst_mask_keep). */
MST_INLINE uint64_t keep_bits(const uint32_t *raw, int len, uint64_t threshold)
{
    uint64_t keep = 0;
    for (int j = 0; j < len; j++) keep |= (uint64_t)mst_mask_keep(raw[j], threshold) << j;
    return keep;
}

#endif
