/* Firing one row of C neurons: the IF step on every neuron, then the spikes
 * packed to bits or scaled into floats. Inlined into each kernel that fires
 * (synapse, IF scan) and into their target clones (cpu_vec.h), so that it
 * runs at the clone's vector width. */
#ifndef MST_CPU_FIRE_H
#define MST_CPU_FIRE_H

#include <immintrin.h>
#include <stdint.h>

#include "../common/mst_bits.h"
#include "../common/mst_math.h"
#include "cpu_vec.h"

/* 0/1 floats -> bits: a compare and a move of the sign bits per vector, the
 * widest the target has first (AVX-512 mask registers, AVX, SSE), so that
 * rows of 24 or 72 leave no float to look at alone. */
MST_INLINE void pack_row(const float *s, int C, uint64_t *dst)
{
    for (int w = 0; w < mst_spike_words(C); w++) {
        uint64_t word = 0;
        int c = 64 * w, end = C < c + 64 ? C : c + 64;
#if defined(__AVX512F__)
        for (; c + 16 <= end; c += 16)
            word |= (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(s + c), _mm512_setzero_ps(), _CMP_NEQ_UQ) << (c - 64 * w);
#endif
#if defined(__AVX__)
        for (; c + 8 <= end; c += 8)
            word |= (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + c), _mm256_setzero_ps(), _CMP_NEQ_UQ))
                    << (c - 64 * w);
#endif
#if defined(__SSE2__)
        for (; c + 4 <= end; c += 4)
            word |= (uint64_t)_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(s + c), _mm_setzero_ps())) << (c - 64 * w);
#endif
        for (; c < end; c++) word |= (uint64_t)(s[c] != 0.0f) << (c - 64 * w);
        dst[w] = word;
    }
}

/* Fires the row with inputs z (threshold units; z is left holding the
 * spikes): spikes packed to bits, or out = spike * out_scale (either may be
 * NULL). Returns the number that fired (counted from the packed words where
 * there are some: no per-row reduction of a vector of counts). */
MST_INLINE int fire_row(float *v, float *z, int C, uint64_t *bits, float *out, float out_scale)
{
    int fired = 0;
    for (int c = 0; c < C; c++) z[c] = mst_if_step(&v[c], z[c]);
    if (bits) {
        pack_row(z, C, bits);
        for (int w = 0; w < mst_spike_words(C); w++) fired += __builtin_popcountll(bits[w]);
        return fired;
    }
    for (int c = 0; c < C; c++) fired += z[c] != 0.0f;
    if (out)
        for (int c = 0; c < C; c++) out[c] = z[c] * out_scale;
    return fired;
}

#endif
