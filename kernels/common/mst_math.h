/* Math shared by every backend: the IF step, the QCFS quantiser, Philox4x32-10
 * and the RSM keep decision. Written once, compiled for host and device, so the
 * CPU reference and the CUDA kernels cannot drift apart. */
#ifndef MST_COMMON_MATH_H
#define MST_COMMON_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define MST_HD __host__ __device__
#else
#define MST_HD
#endif

/* QCFS levels the authors trained with (L in the paper). */
#define MST_QCFS_LEVELS 16

/* Integrate-and-fire with soft reset, in units of the threshold: v += z, fire at
 * v >= 1, subtract the spike. The caller folds 1/lambda into z. */
MST_HD static inline float mst_if_step(float *v, float z)
{
    float m = *v + z;
    float s = m >= 1.0f ? 1.0f : 0.0f;
    *v = m - s;
    return s;
}

/* An IF site's input through the BatchNorm folded before it (scale and
 * shift of channel c; NULL where none), in the order both backends use. */
MST_HD static inline float mst_if_affine(float u, const float *scale, const float *shift, int c)
{
    return scale ? u * scale[c] + shift[c] : u;
}

/* The residual stream after a branch whose output is s: x + lam * s, then
 * the BatchNorm that follows it where there is one (scale, shift of channel
 * c; NULL where none). */
MST_HD static inline float mst_residual_bn(float x, float s, float lam, int bn, float scale, float shift)
{
    float u = x + lam * s;
    return bn ? u * scale + shift : u;
}

MST_HD static inline float mst_residual(float x, float s, float lam, const float *scale, const float *shift, int c)
{
    return mst_residual_bn(x, s, lam, scale != NULL, scale ? scale[c] : 1.0f, scale ? shift[c] : 0.0f);
}

/* QCFS in threshold units: clamp(floor(z*L + 0.5)/L, 0, 1). */
MST_HD static inline float mst_qcfs(float z)
{
    float q = floorf(z * (float)MST_QCFS_LEVELS + 0.5f) / (float)MST_QCFS_LEVELS;
    return q < 0.0f ? 0.0f : (q > 1.0f ? 1.0f : q);
}

/* e^x rounded to float using only +, -, *, floor and an exact power of two,
 * so that every IEEE machine gets the same bits: libm's expf is not one
 * function (glibc picks an FMA variant on CPUs that have FMA; CUDA's is
 * another implementation). x = k ln2 + r with |r| <= ln2/2 in double (ln2
 * split so that k ln2_hi is exact, r good to ~1e-26); e^r by its Taylor series to r^13
 * (truncation under 1e-17); 2^k from its bits, not libm's ldexp (a call,
 * not inlined); then one rounding to float, which is correct
 * except where e^x lies within ~1e-16 of a float rounding boundary. */
MST_HD static inline float mst_expf(float x)
{
    if (x != x) return x;
    if (x > 100.0f) return INFINITY; /* e^89 already overflows float */
    if (x < -110.0f) return 0.0f;    /* e^-104 already rounds to 0 */
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    double xd = (double)x, k = floor(xd * 1.44269504088896338700 + 0.5);
    double r = (xd - k * ln2_hi) - k * ln2_lo;
    const double c[14] = {1.0,
                          1.0,
                          1.0 / 2,
                          1.0 / 6,
                          1.0 / 24,
                          1.0 / 120,
                          1.0 / 720,
                          1.0 / 5040,
                          1.0 / 40320,
                          1.0 / 362880,
                          1.0 / 3628800,
                          1.0 / 39916800,
                          1.0 / 479001600,
                          1.0 / 6227020800.0};
    double p = c[13];
    for (int i = 12; i >= 0; i--) p = p * r + c[i];
    /* times 2^k (|k| <= 160: a normal double, so the product is exact) */
    uint64_t two_k = (uint64_t)((int64_t)k + 1023) << 52;
    double scale;
    memcpy(&scale, &two_k, sizeof scale);
    return (float)(p * scale);
}

/* Channel c of softmax(A) . v before normalisation: sum_j u[j] v[j][c] over
 * the n keys, as (even keys) + (odd keys), each summed in key order (two
 * chains, so that the adds overlap). Every backend sums so; the CPU's vector
 * lanes run this recurrence. */
MST_HD static inline float mst_attn_weighted(const float *u, const float *v, int n, int d, int c)
{
    float ev = 0.0f, od = 0.0f;
    int j = 0;
    for (; j + 1 < n; j += 2) {
        ev += u[j] * v[j * d + c];
        od += u[j + 1] * v[(j + 1) * d + c];
    }
    if (j < n) ev += u[j] * v[j * d + c];
    return ev + od;
}

/* Membrane potential before the first step (spec section 2). */
#define MST_IF_V0 0.5f

typedef struct { uint32_t v[4]; } mst_u32x4;

MST_HD static inline uint32_t mst_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Philox4x32's round multipliers. */
#define MST_PHILOX_M0 0xD2511F53u
#define MST_PHILOX_M1 0xCD9E8D57u

/* One Philox4x32 round on counter words c0..c3 with key (k0, k1). */
MST_HD static inline void mst_philox_round(uint32_t *c0, uint32_t *c1, uint32_t *c2, uint32_t *c3, uint32_t k0,
                                           uint32_t k1)
{
    uint32_t hi0, hi1;
    uint32_t lo0 = mst_mulhilo32(MST_PHILOX_M0, *c0, &hi0);
    uint32_t lo1 = mst_mulhilo32(MST_PHILOX_M1, *c2, &hi1);
    uint32_t n0 = hi1 ^ *c1 ^ k0, n2 = hi0 ^ *c3 ^ k1;
    *c0 = n0;
    *c1 = lo1;
    *c2 = n2;
    *c3 = lo0;
}

/* The key schedule: round r uses the key bumped r times. */
MST_HD static inline uint32_t mst_philox_key0(uint32_t k0, int r) { return k0 + (uint32_t)r * 0x9E3779B9u; }
MST_HD static inline uint32_t mst_philox_key1(uint32_t k1, int r) { return k1 + (uint32_t)r * 0xBB67AE85u; }

/* Philox4x32-10 as Random123 and cuRAND define it (10 rounds, key bumped
 * between rounds). */
MST_HD static inline mst_u32x4 mst_philox4x32_10(mst_u32x4 c, uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++)
        mst_philox_round(&c.v[0], &c.v[1], &c.v[2], &c.v[3], mst_philox_key0(k0, r), mst_philox_key1(k1, r));
    return c;
}

/* The four raw numbers starting at output number 4*block of a subsequence:
 * what curand_init(seed, subsequence, 4*block) then four curand() calls give. */
MST_HD static inline mst_u32x4 mst_philox_block(uint64_t seed, uint64_t subsequence, uint64_t block)
{
    mst_u32x4 c = {{(uint32_t)block, (uint32_t)(block >> 32),
                    (uint32_t)subsequence, (uint32_t)(subsequence >> 32)}};
    return mst_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* curand_init(seed, subsequence, offset, &s); curand(&s). */
MST_HD static inline uint32_t mst_philox_raw(uint64_t seed, uint64_t subsequence, uint64_t offset)
{
    return mst_philox_block(seed, subsequence, offset >> 2).v[offset & 3];
}

/* Spec section 4: subsequence of one (image, mask site, timestep). */
MST_HD static inline uint64_t mst_mask_subsequence(uint64_t image, uint32_t site, uint32_t t)
{
    return (image << 32) | ((uint64_t)(site & 0xFFFFu) << 16) | (uint64_t)(t & 0xFFFFu);
}

/* floor(p * 2^32) as an integer, so the keep test never touches floats. */
MST_HD static inline uint64_t mst_mask_threshold(double p)
{
    if (p <= 0.0) return 0;
    if (p >= 1.0) return (uint64_t)1 << 32;
    return (uint64_t)(p * 4294967296.0);
}

MST_HD static inline int mst_mask_keep(uint32_t raw, uint64_t threshold)
{
    return (uint64_t)raw >= threshold;
}

#endif
