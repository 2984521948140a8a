/* The emulator's own checks fire: suites cuda_emu and engine_emu trust it to
 * fail where a real GPU would give a different answer or an error. */
#include <criterion/criterion.h>

#include <vector>

#include "cuda_emu.h"

/* The running test's device buffers, freed after it whatever way it ends:
 * under LeakSanitizer a buffer left to exit is a leak. */
static std::vector<void *> buffers;

static void free_buffers()
{
    for (void *p : buffers) cudaFree(p);
    buffers.clear();
}

TestSuite(emu, .fini = free_buffers);

static void *dev(size_t bytes)
{
    void *p = nullptr;
    cr_assert_eq(cudaMalloc(&p, bytes), cudaSuccess);
    buffers.push_back(p);
    return p;
}

/* Each thread writes its slot, then reads its neighbour's (dynamic shared
 * memory, as kernels/cuda uses: it starts as garbage in every block). */
__global__ void neighbour(int *out, int barrier)
{
    MST_DYNAMIC_SHARED(int, s);
    int i = threadIdx.x;
    s[i] = i * 10;
    if (barrier) __syncthreads();
    out[blockIdx.x * blockDim.x + i] = s[(i + 1) % blockDim.x];
}

static int neighbour_errors(int barrier)
{
    int *d = (int *)dev(sizeof(int) * 4 * 128);
    MST_LAUNCH(neighbour, 4, 128, sizeof(int) * 128, nullptr)(d, barrier);
    cr_assert_eq(cudaGetLastError(), cudaSuccess);
    std::vector<int> h(4 * 128);
    cr_assert_eq(cudaMemcpyAsync(h.data(), d, sizeof(int) * h.size(), cudaMemcpyDeviceToHost, nullptr), cudaSuccess);
    int bad = 0;
    for (int i = 0; i < 4 * 128; i++) bad += h[i] != (i % 128 + 1) % 128 * 10;
    return bad;
}

Test(emu, a_missing_barrier_changes_the_result)
{
    cr_expect_eq(neighbour_errors(1), 0);
    cr_expect_gt(neighbour_errors(0), 0, "threads ran in index order: the shuffle hides races");
}

__global__ void collectives(unsigned *ballots, unsigned long long *sums)
{
    unsigned lane = threadIdx.x & 31, m = __ballot_sync(0xffffffffu, lane % 3 == 0);
    unsigned long long v = threadIdx.x;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) ballots[threadIdx.x / 32] = m, sums[threadIdx.x / 32] = v;
}

Test(emu, warp_collectives_compute_what_cuda_does)
{
    unsigned *b = (unsigned *)dev(sizeof(unsigned) * 4);
    unsigned long long *s = (unsigned long long *)dev(sizeof(unsigned long long) * 4);
    MST_LAUNCH(collectives, 1, 128, 0, nullptr)(b, s);
    unsigned hb[4];
    unsigned long long hs[4];
    cudaMemcpyAsync(hb, b, sizeof hb, cudaMemcpyDeviceToHost, nullptr);
    cudaMemcpyAsync(hs, s, sizeof hs, cudaMemcpyDeviceToHost, nullptr);
    for (int w = 0; w < 4; w++) {
        cr_expect_eq(hb[w], 0x49249249u, "warp %d ballot %08x", w, hb[w]);
        cr_expect_eq(hs[w], (unsigned long long)(32 * w * 32 + 31 * 32 / 2), "warp %d sum %llu", w, hs[w]);
    }
}

Test(emu, a_collective_with_missing_lanes_faults)
{
    unsigned *b = (unsigned *)dev(sizeof(unsigned) * 4);
    unsigned long long *s = (unsigned long long *)dev(sizeof(unsigned long long) * 4);
    MST_LAUNCH(collectives, 1, 48, 0, nullptr)(b, s); /* the second warp has 16 lanes */
    cr_expect_eq(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
}

/* half a warp in a collective, the other half at a barrier: a hang on a GPU */
__global__ void split_warp(int *out)
{
    if (threadIdx.x < 16)
        out[0] = (int)__ballot_sync(0xffffffffu, 1);
    else
        __syncthreads();
}

Test(emu, a_divergent_collective_faults)
{
    int *d = (int *)dev(sizeof(int));
    MST_LAUNCH(split_warp, 1, 32, 0, nullptr)(d);
    cr_expect_eq(cudaGetLastError(), cudaErrorLaunchFailure);
}

__global__ void touch_shared(int *out)
{
    MST_DYNAMIC_SHARED(int, s);
    s[threadIdx.x] = 1;
    out[0] = s[0];
}

Test(emu, launch_limits_are_cuda_s)
{
    int *d = (int *)dev(sizeof(int));
    MST_LAUNCH(touch_shared, 1, 2048, 0, nullptr)(d);
    cr_expect_eq(cudaGetLastError(), cudaErrorInvalidConfiguration);
    MST_LAUNCH(touch_shared, 1, 32, 64 * 1024, nullptr)(d);
    cr_expect_eq(cudaGetLastError(), cudaErrorInvalidValue, "64 KiB of dynamic shared memory without opting in");
    cr_assert_eq(cudaFuncSetAttribute(touch_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024), cudaSuccess);
    MST_LAUNCH(touch_shared, 1, 32, 64 * 1024, nullptr)(d);
    cr_expect_eq(cudaGetLastError(), cudaSuccess);
}

__global__ void add_to(int *x, int v) { x[threadIdx.x] += v; }

Test(emu, capture_records_and_replays)
{
    cudaStream_t st;
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    int *d = (int *)dev(sizeof(int) * 32), h[32] = {0};
    cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, st);
    cr_assert_eq(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    int v = 3;
    MST_LAUNCH(add_to, 1, 32, 0, st)(d, v);
    v = 100; /* arguments were copied at the launch */
    cudaGraph_t g;
    cr_assert_eq(cudaStreamEndCapture(st, &g), cudaSuccess);
    cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, st);
    cr_expect_eq(h[5], 0, "captured work ran at capture time");
    cudaGraphExec_t e;
    cr_assert_eq(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
    cudaGraphLaunch(e, st);
    cudaGraphLaunch(e, st);
    cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, st);
    cr_expect_eq(h[5], 6);
    /* an illegal call invalidates the capture: work is refused until it ends */
    cr_assert_eq(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    void *p;
    cr_expect_eq(cudaMalloc(&p, 64), cudaErrorStreamCaptureUnsupported, "allocating inside a capture");
    cr_expect_eq(cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, st), cudaErrorStreamCaptureInvalidated);
    cr_expect_neq(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess, "still capturing");
    cudaGraph_t bad;
    cr_expect_eq(cudaStreamEndCapture(st, &bad), cudaErrorStreamCaptureInvalidated);
    cr_expect(bad == nullptr);
    cr_assert_eq(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    cr_expect_eq(cudaStreamSynchronize(st), cudaErrorStreamCaptureUnsupported, "synchronising inside a capture");
    cr_expect_eq(cudaStreamEndCapture(st, &bad), cudaErrorStreamCaptureInvalidated);
    cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, st);
    cr_expect_eq(h[5], 6, "the stream runs work again once the capture ended");
    cudaGraphExecDestroy(e);
    cudaGraphDestroy(g);
    cudaStreamDestroy(st);
}

Test(emu, copies_and_gemm_operands_stay_inside_allocations)
{
    float *d = (float *)dev(sizeof(float) * 12), h[16] = {0};
    cr_expect_eq(cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, nullptr), cudaErrorInvalidValue);
    cr_expect_eq(cudaMemcpyAsync(h, d, sizeof(float) * 12, cudaMemcpyHostToDevice, nullptr), cudaErrorInvalidValue,
                 "a copy the wrong way round");
    cublasHandle_t b;
    cublasCreate(&b);
    float *a = (float *)dev(sizeof(float) * 6), *x = (float *)dev(sizeof(float) * 6), *y = (float *)dev(sizeof(float) * 4);
    float ha[6] = {1, 2, 3, 4, 5, 6}, hx[6] = {1, 0, 2, 0, 1, 1}, hy[4], one = 1, zero = 0;
    cudaMemcpyAsync(a, ha, sizeof ha, cudaMemcpyHostToDevice, nullptr);
    cudaMemcpyAsync(x, hx, sizeof hx, cudaMemcpyHostToDevice, nullptr);
    /* column-major: A 2x3 = [1 3 5; 2 4 6], X 3x2 = [1 0; 0 1; 2 1] */
    cr_assert_eq(cublasSgemm(b, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a, 2, x, 3, &zero, y, 2), CUBLAS_STATUS_SUCCESS);
    cudaMemcpyAsync(hy, y, sizeof hy, cudaMemcpyDeviceToHost, nullptr);
    cr_expect(hy[0] == 11 && hy[1] == 14 && hy[2] == 8 && hy[3] == 10, "%g %g %g %g", hy[0], hy[1], hy[2], hy[3]);
    cr_expect_eq(cublasSgemm(b, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a, 2, x, 4, &zero, y, 2),
                 CUBLAS_STATUS_INVALID_VALUE, "ldb 4 reaches past X");
    cr_expect_eq(cublasSgemm(b, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a, 1, x, 3, &zero, y, 2),
                 CUBLAS_STATUS_INVALID_VALUE, "lda below the row count");
    cublasDestroy(b);
}
