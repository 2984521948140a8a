/* Philox4x32-10 and the RSM mask decision (spec section 4). */
#include <criterion/criterion.h>

#include "kernels/common/mst_math.h"
#include "kernels/cpu/cpu_philox.h"

typedef struct {
    uint32_t ctr[4], key[2], out[4];
} kat;

/* Random123's kat_vectors for philox4x32 with 10 rounds. */
static const kat vectors[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

Test(philox, random123_known_answers)
{
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        mst_u32x4 c = {{vectors[i].ctr[0], vectors[i].ctr[1], vectors[i].ctr[2], vectors[i].ctr[3]}};
        mst_u32x4 r = mst_philox4x32_10(c, vectors[i].key[0], vectors[i].key[1]);
        for (int j = 0; j < 4; j++)
            cr_expect_eq(r.v[j], vectors[i].out[j], "vector %zu word %d: %08x != %08x", i, j, r.v[j],
                         vectors[i].out[j]);
    }
}

/* curand_init(seed, sub, offset): the counter is (offset/4 as two words, sub
 * as two words), the key is seed, and the first curand() returns word
 * offset%4. The all-zero KAT vector is offsets 0..3 of subsequence 0, seed 0. */
Test(philox, curand_offset_and_subsequence_layout)
{
    for (int w = 0; w < 4; w++) cr_expect_eq(mst_philox_raw(0, 0, (uint64_t)w), vectors[0].out[w]);
    const uint64_t seeds[] = {0, 1234, 0x299f31d0a4093822ull}, subs[] = {0, 77, 0x0370734413198a2eull};
    const uint64_t offsets[] = {0, 5, 0x100000003ull, 0x3fffffffffffffffull};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 4; c++) {
                uint64_t o = offsets[c];
                mst_u32x4 ctr = {{(uint32_t)(o >> 2), (uint32_t)(o >> 34), (uint32_t)subs[b], (uint32_t)(subs[b] >> 32)}};
                mst_u32x4 r = mst_philox4x32_10(ctr, (uint32_t)seeds[a], (uint32_t)(seeds[a] >> 32));
                cr_expect_eq(mst_philox_raw(seeds[a], subs[b], o), r.v[o & 3]);
            }
}

/* The CPU's vector draws (philox_draw: whole blocks a vector at a time,
 * shuffled into place) against mst_philox_raw number by number: offsets
 * at every word of a block, counts that leave a vector part full, a block
 * counter that carries into its high word, the KAT's key and counter words. */
Test(philox, cpu_vector_draws_match_the_scalar_rounds)
{
    const uint64_t seeds[] = {0, 0x299f31d0a4093822ull}, subs[] = {0, 0x0370734413198a2eull};
    const uint64_t offsets[] = {0, 1, 2, 3, 4 * 0xfffffffdull + 1, 0x3ffffffffffffff0ull};
    const long counts[] = {1, 3, 4, 5, 31, 64, 65, 130};
    uint32_t buf[130 + 6];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 6; c++)
                for (int n = 0; n < 8; n++) {
                    const uint32_t *r = philox_draw(seeds[a], subs[b], offsets[c], counts[n], buf);
                    for (long i = 0; i < counts[n]; i++)
                        cr_assert_eq(r[i], mst_philox_raw(seeds[a], subs[b], offsets[c] + (uint64_t)i),
                                     "seed %d sub %d offset %d count %ld: number %ld", a, b, c, counts[n], i);
                }
}

Test(philox, subsequence_fields)
{
    cr_expect_eq(mst_mask_subsequence(0, 0, 0), 0u);
    cr_expect_eq(mst_mask_subsequence(3, 5, 7), (3ull << 32) | (5ull << 16) | 7ull);
    cr_expect_eq(mst_mask_subsequence(0xffffffffull, 0xffff, 0xffff), 0xffffffffffffffffull);
}

Test(philox, keep_threshold_is_integer_exact)
{
    cr_expect_eq(mst_mask_threshold(0.0), 0u);
    cr_expect_eq(mst_mask_threshold(0.75), 3221225472ull);
    cr_expect_eq(mst_mask_threshold(0.5), 2147483648ull);
    cr_expect_eq(mst_mask_threshold(1.0), 1ull << 32);
    cr_expect_eq(mst_mask_threshold(0.1), 429496729ull);
    cr_expect(mst_mask_keep(0, 0));
    cr_expect(mst_mask_keep(3221225472u, 3221225472ull));
    cr_expect(!mst_mask_keep(3221225471u, 3221225472ull));
    cr_expect(!mst_mask_keep(0xffffffffu, 1ull << 32));
}

/* Over 2^18 draws the kept fraction is 1 - p to within 5 standard deviations. */
Test(philox, keep_rate_matches_ratio)
{
    const double ratios[] = {0.25, 0.5, 0.75};
    const int n = 1 << 18;
    for (int r = 0; r < 3; r++) {
        uint64_t thr = mst_mask_threshold(ratios[r]);
        int kept = 0;
        for (int i = 0; i < n; i++) kept += mst_mask_keep(mst_philox_raw(42, mst_mask_subsequence(1, 2, 3), (uint64_t)i), thr);
        double p = 1.0 - ratios[r], sd = sqrt(p * (1 - p) / n);
        cr_expect(fabs((double)kept / n - p) < 5 * sd, "p=%g kept %d of %d", ratios[r], kept, n);
    }
}
