/* cuRAND's device Philox as the RSM masks use it (spec section 4): a thread
 * initialises the generator at a 4-aligned offset and takes one curand4,
 * which is exactly that Philox block. */
#ifndef MST_CUDA_PHILOX_CUH
#define MST_CUDA_PHILOX_CUH

#include <curand_kernel.h>

/* Four raw numbers from output 4*group of a subsequence. */
__device__ __forceinline__ uint4 draw4(uint64_t seed, uint64_t sub, uint64_t group)
{
    curandStatePhilox4_32_10_t st;
    curand_init(seed, sub, 4 * group, &st);
    return curand4(&st);
}

__device__ __forceinline__ uint32_t lane_of(uint4 r, int e) { return e == 0 ? r.x : e == 1 ? r.y : e == 2 ? r.z : r.w; }

#endif
