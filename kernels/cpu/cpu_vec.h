/* The CPU kernels' vector of floats. They use it for elementwise operations
 * only (a lane computes what the scalar code computes for its element, in the
 * same order), so no result depends on its width: 16 floats where AVX-512 is
 * compiled in, else 8 (one AVX register, two SSE ones). -DMST_VEC=N overrides
 * it, so that a build can check that claim. */
#ifndef MST_CPU_VEC_H
#define MST_CPU_VEC_H

#ifndef MST_VEC
#ifdef __AVX512F__
#define MST_VEC 16
#else
#define MST_VEC 8
#endif
#endif

/* Registers one mst_vf takes: kernels size their register blocks by it
 * (an SSE-only target has 16 registers of 4 floats, AVX2 16 of 8, AVX-512
 * 32 of 16). */
#if defined(__AVX512F__)
#define MST_VEC_REGS (MST_VEC <= 16 ? 1 : MST_VEC / 16)
#elif defined(__AVX__)
#define MST_VEC_REGS (MST_VEC <= 8 ? 1 : MST_VEC / 8)
#else
#define MST_VEC_REGS (MST_VEC <= 4 ? 1 : MST_VEC / 4)
#endif

/* Vectors per accumulator set in the synapse's inner loop (and in the add
 * floor that mirrors it): 2 x MST_ACC_VECS accumulators stay in registers
 * (8 ymm or zmm registers; 8 xmm where a vector is two SSE registers). */
#define MST_ACC_VECS (MST_VEC_REGS == 1 ? 4 : 2)

/* aligned(4): loads and stores from any float address */
typedef float mst_vf __attribute__((vector_size(MST_VEC * sizeof(float)), aligned(4)));

/* A build for the x86-64 baseline (the portable one) compiles each kernel's
 * per-thread work function also for AVX2 and AVX-512 and picks one at run
 * time. What it calls in its hot loops is inlined into it (MST_INLINE): a
 * clone's callees are not cloned; one left out of line would run baseline
 * code, slower but with the same bits. Same source, elementwise vectors, no
 * contraction: every clone gives the same bits. A native build has no need;
 * -DMST_CPU_NO_CLONES leaves them out, so that a build runs the baseline code
 * on any CPU (for checking that claim). */
#if defined(__x86_64__) && !defined(__AVX2__) && !defined(MST_CPU_NO_CLONES)
#define MST_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MST_CPU_CLONES
#endif
#define MST_INLINE static inline __attribute__((always_inline))

#endif
