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

/* aligned(4): loads and stores from any float address */
typedef float mst_vf __attribute__((vector_size(MST_VEC * sizeof(float)), aligned(4)));

#endif
