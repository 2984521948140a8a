/* A CPU emulation of the part of CUDA that kernels/cuda uses, so that the
 * CUDA backend's own code runs (and is tested against the CPU backend) on
 * machines without a GPU. Force-included before each kernels/cuda source,
 * which g++ then compiles as C++ (tests/CMakeLists.txt).
 *
 * What it models: every thread of a block is a fiber; a block's fibers run in
 * a shuffled order from one synchronisation point to the next, so a kernel
 * that reads another thread's write without a barrier between them sees a
 * different order than on the CPU twin and fails its test. __syncthreads,
 * __ballot_sync and __shfl_down_sync wait for the threads they name; a wait
 * that can never end (a barrier some threads skip, a warp collective with
 * exited lanes) is reported as an error. Launch limits (block size, dynamic
 * shared memory above 48 KiB without cudaFuncSetAttribute), device-pointer
 * bounds of copies and GEMM operands, and stream capture (work recorded, not
 * run; synchronising or allocating inside a capture refused) are checked.
 * Work runs when it is submitted; stream order is therefore trivially kept.
 *
 * What it does not model: timing, memory-model subtleties beyond barrier
 * order, device-side faults on host pointers (compute-sanitizer on a real
 * GPU covers those: benchmarks/gpu-check.sh). */
#ifndef MST_CUDA_EMU_H
#define MST_CUDA_EMU_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <curand_kernel.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <tuple>
#include <utility>

/* Execution-space attributes mean nothing on the host. A block's fibers run
 * on one host thread and blocks run one after another, so a function-scope
 * static is what a __shared__ array is (but zeroed once, not garbage in
 * every block as dynamic shared memory is here). */
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace mst_emu {

struct thread_ids {
    uint3 thread, block, block_dim, grid_dim;
};
/* The running fiber's coordinates. */
const thread_ids &here();

void sync_block();
/* Every lane of the caller's warp contributes value; all 32 come back. */
void warp_exchange(unsigned mask, uint64_t value, uint64_t all[32]);

/* Runs body on every thread of the grid now, or records it when the stream
 * is being captured. Sets the last error on a bad configuration. */
void submit(cudaStream_t stream, dim3 grid, dim3 block, size_t shared, const void *kernel,
            std::function<void()> body);
/* Any work on a stream: run now, or record it under capture; refused on a
 * stream whose capture was invalidated. */
cudaError_t submit_host(cudaStream_t stream, std::function<void()> work);
/* The dynamic shared memory of the running block. */
void *dynamic_shared();
/* Whether [p, p+bytes) lies inside one device allocation. */
bool is_device_range(const void *p, size_t bytes);
/* The sticky error of a faulted kernel, or cudaSuccess: every call returns it. */
cudaError_t api_entry();
cudaError_t set_last(cudaError_t e);

template <class... P> struct launcher {
    void (*kernel)(P...);
    dim3 grid, block;
    size_t shared;
    cudaStream_t stream;
    template <class... A> void operator()(A &&...args) const
    {
        std::tuple<P...> bound(std::forward<A>(args)...); /* by value, as a launch copies its arguments */
        void (*k)(P...) = kernel;
        submit(stream, grid, block, shared, (const void *)k, [k, bound]() { std::apply(k, bound); });
    }
};

template <class... P>
launcher<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream)
{
    return launcher<P...>{kernel, grid, block, shared, stream};
}

} // namespace mst_emu

#define threadIdx (mst_emu::here().thread)
#define blockIdx (mst_emu::here().block)
#define blockDim (mst_emu::here().block_dim)
#define gridDim (mst_emu::here().grid_dim)

#define MST_LAUNCH(kernel, grid, block, shared, stream) mst_emu::launch(kernel, grid, block, shared, stream)
#define MST_DYNAMIC_SHARED(type, name) type *name = (type *)mst_emu::dynamic_shared()

/* cuda_runtime.h's typed overload exists for nvcc only. */
template <class... P> static inline cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value)
{
    return cudaFuncSetAttribute((const void *)kernel, attr, value);
}

static inline void __syncthreads() { mst_emu::sync_block(); }
/* one rounding, as the GPU's fused multiply-add (C's fmaf is exact) */
static inline float __fmaf_rn(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }

static inline unsigned __ballot_sync(unsigned mask, int pred)
{
    uint64_t all[32];
    mst_emu::warp_exchange(mask, pred != 0, all);
    unsigned m = 0;
    for (int l = 0; l < 32; l++) m |= (unsigned)all[l] << l;
    return m;
}

template <class T> static inline T __shfl_down_sync(unsigned mask, T value, int delta)
{
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t mine = 0, all[32];
    __builtin_memcpy(&mine, &value, sizeof(T));
    mst_emu::warp_exchange(mask, mine, all);
    int lane = (int)(threadIdx.x & 31), src = lane + (unsigned)delta % 32; /* as CUDA: delta modulo the width */
    T out;
    __builtin_memcpy(&out, &all[src < 32 ? src : lane], sizeof(T));
    return out;
}

static inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    uint64_t all[32];
    mst_emu::warp_exchange(mask, 0, all);
}

/* The warp matrix operations (<mma.h>) for 16x16x16 tiles. The API exposes
 * no element-to-lane mapping that mst uses, so lane 0 of the warp holds the
 * whole tile and does all the work; every operation is still a warp
 * collective (all 32 lanes, as on the GPU), and the CUDA guide's pointer and
 * leading-dimension rules are checked. */
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "cuda_emu models 16x16x16 tiles only");
    float v[16 * 16];
};

void check_tile(const void *p, unsigned ldm, size_t elem); /* faults the kernel when the guide's rules are broken */

/* A warp collective; true in the lane that does the work. */
static inline bool tile_lane()
{
    __syncwarp();
    return (threadIdx.x & 31) == 0;
}

template <class F> static inline void fill_fragment(F &f, float x)
{
    if (tile_lane())
        for (float &e : f.v) e = x;
}

template <class T> static inline float tile_value(T x) { return (float)x; }
static inline float tile_value(__half x) { return __half2float(x); }
static inline float tile_value(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class Use, class T>
static inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, row_major> &f, const T *p, unsigned ldm)
{
    if (!tile_lane()) return;
    check_tile(p, ldm, sizeof(T));
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) f.v[i * 16 + j] = tile_value(p[(size_t)i * ldm + j]);
}

template <class T>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, T, row_major> &a,
                            const fragment<matrix_b, 16, 16, 16, T, row_major> &b,
                            const fragment<accumulator, 16, 16, 16, float> &c)
{
    if (!tile_lane()) return;
    float out[16 * 16];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float acc = c.v[i * 16 + j];
            for (int k = 0; k < 16; k++) acc += a.v[i * 16 + k] * b.v[k * 16 + j];
            out[i * 16 + j] = acc;
        }
    for (int i = 0; i < 256; i++) d.v[i] = out[i];
}

static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                                     layout_t layout)
{
    /* other lanes may run on before lane 0 has stored: reading the tile
       back needs the __syncwarp() that the GPU needs too */
    if (!tile_lane()) return;
    check_tile(p, ldm, sizeof(float));
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) p[layout == mem_row_major ? (size_t)i * ldm + j : (size_t)j * ldm + i] = f.v[i * 16 + j];
}
} // namespace wmma
} // namespace nvcuda

/* Fibers of one block never run at the same time, so these are atomic. */
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
    unsigned long long old = *p;
    *p = old + v;
    return old;
}

static inline unsigned atomicAnd(unsigned *p, unsigned v)
{
    unsigned old = *p;
    *p = old & v;
    return old;
}

#endif
