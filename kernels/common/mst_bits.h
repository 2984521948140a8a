/* Bit-packed spike tensors: between layers a spike is one bit. Row r of C
 * neurons occupies mst_spike_words(C) 64-bit words; neuron c is bit c % 64 of
 * word c / 64; unused high bits of the last word are zero. */
#ifndef MST_COMMON_BITS_H
#define MST_COMMON_BITS_H

#include "mst_math.h"

MST_HD static inline int mst_spike_words(int C) { return (C + 63) / 64; }

MST_HD static inline int mst_bit(const uint64_t *row, int c) { return (int)((row[c >> 6] >> (c & 63)) & 1u); }

/* len <= 64 bits of a row starting at bit `at`, as the low bits of a word. */
MST_HD static inline uint64_t mst_bit_field(const uint64_t *row, int at, int len)
{
    int w = at >> 6, s = at & 63;
    uint64_t lo = row[w] >> s;
    if (s + len > 64) lo |= row[w + 1] << (64 - s);
    return len == 64 ? lo : lo & ((UINT64_C(1) << len) - 1);
}

#endif
