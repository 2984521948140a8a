/* The CUDA runtime calls kernels/cuda makes, emulated on the CPU (see
 * cuda_emu.h for what is modelled). One emulated device, "CUDA emulator",
 * reporting sm_90 limits; its memory size is MST_EMU_MEMORY bytes (default
 * 8 GiB) so that out-of-memory paths can be tested. */
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda_emu.h"

struct CUstream_st {
    bool capturing = false;
    bool invalidated = false; /* an illegal call ended the capture's use; EndCapture reports it */
    std::vector<std::function<void()>> recorded;
};
struct CUevent_st {
    double ms = 0;
    bool recorded = false;
};
struct CUgraph_st {
    std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
    std::vector<std::function<void()>> work;
};

/* Fiber switches. glibc's swapcontext makes a system call per switch (it
 * saves the signal mask), which made the emulated IF scan, a warp ballot per
 * neuron and step, spend most of its time in the kernel; on x86-64 a switch
 * is the callee-saved registers (the FP control words never change here). */
#if defined(__x86_64__)
extern "C" void mst_emu_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl mst_emu_switch\n"
        ".type mst_emu_switch,@function\n"
        "mst_emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size mst_emu_switch, .-mst_emu_switch\n");

struct context {
    void *sp = nullptr;
    const void *bottom = nullptr; /* the stack, for AddressSanitizer */
    size_t size = 0;
};

static void raw_switch(context *from, context *to) { mst_emu_switch(&from->sp, to->sp); }

/* A stack whose first switch "returns" into entry, 16-byte aligned as the
 * ABI wants at a call. entry must never return. */
static void context_make(context *c, char *stack, size_t size, void (*entry)())
{
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    uint64_t *p = (uint64_t *)top;
    *--p = 0;                    /* entry's return address: never used */
    *--p = (uint64_t)entry;      /* where ret goes */
    for (int i = 0; i < 6; i++) *--p = 0; /* rbp rbx r12-r15 */
    c->sp = p;
    c->bottom = stack, c->size = size;
}
#else
#include <ucontext.h>
struct context {
    ucontext_t uc;
    const void *bottom = nullptr;
    size_t size = 0;
};

static void raw_switch(context *from, context *to) { swapcontext(&from->uc, &to->uc); }

static void context_make(context *c, char *stack, size_t size, void (*entry)())
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
    c->bottom = stack, c->size = size;
}
#endif

/* Under AddressSanitizer (a build with -fsanitize=address checks the kernels'
 * reads and writes of device and shared memory), every switch is announced.
 * Fibers only ever switch to and from the scheduler, so the context we come
 * back from is always the one we switched to. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
static void context_switch(context *from, context *to, bool exiting = false)
{
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, to->bottom, to->size);
    raw_switch(from, to);
    __sanitizer_finish_switch_fiber(fake, &to->bottom, &to->size);
}
static void context_entered(context *from) { __sanitizer_finish_switch_fiber(nullptr, &from->bottom, &from->size); }
/* a reused stack still carries the redzones of the frames left on it */
static void stack_fresh(char *stack, size_t size) { __asan_unpoison_memory_region(stack, size); }
#else
static void context_switch(context *from, context *to, bool exiting = false)
{
    (void)exiting;
    raw_switch(from, to);
}
static void context_entered(context *from) { (void)from; }
static void stack_fresh(char *stack, size_t size) { (void)stack, (void)size; }
#endif

namespace mst_emu {

namespace {

const size_t kStack = 256 * 1024;
const size_t kStaticShared = 48 * 1024, kOptinShared = 232448;

enum fiber_state { RUNNABLE, WAIT_BLOCK, WAIT_WARP, DONE };

struct fiber {
    context ctx;
    char *stack = nullptr;
    fiber_state state = RUNNABLE;
    thread_ids ids;
    unsigned mask = 0;
    uint64_t slot = 0;
};

struct block_run {
    std::vector<fiber> fibers;
    std::vector<uint64_t> results; /* [warp][32] */
    std::unique_ptr<char[]> shared; /* exactly the launch's bytes */
    const std::function<void()> *body = nullptr;
    context scheduler;
    fiber *current = nullptr;
    /* the stacks are kept from launch to launch, and freed with the runtime
       at exit: LeakSanitizer counts what is left then */
    ~block_run()
    {
        for (fiber &f : fibers) free(f.stack);
    }
};

struct state {
    cudaError_t last = cudaSuccess, sticky = cudaSuccess;
    std::map<uintptr_t, size_t> device; /* base -> bytes */
    size_t used = 0, limit = 0;
    std::map<const void *, int> optin;  /* kernel -> max dynamic shared bytes */
    cudaStream_t capturing = nullptr;
    block_run run;
    unsigned long long launches = 0;
};

state &st()
{
    static state s;
    if (!s.limit) {
        const char *m = getenv("MST_EMU_MEMORY");
        s.limit = m ? (size_t)strtoull(m, nullptr, 10) : (size_t)8 << 30;
    }
    return s;
}

thread_local block_run *active = nullptr;

void fiber_entry()
{
    block_run *r = active;
    context_entered(&r->scheduler);
    (*r->body)();
    r->current->state = DONE;
    context_switch(&r->current->ctx, &r->scheduler, true); /* never resumed */
    abort();
}

void yield(block_run *r) { context_switch(&r->current->ctx, &r->scheduler); }

/* Releases a warp whose every lane waits in the same collective. */
bool release_warps(block_run *r, std::string *why)
{
    size_t n = r->fibers.size();
    for (size_t w0 = 0; w0 < n; w0 += 32) {
        size_t lanes = std::min<size_t>(32, n - w0), waiting = 0, done = 0;
        for (size_t l = 0; l < lanes; l++) {
            waiting += r->fibers[w0 + l].state == WAIT_WARP;
            done += r->fibers[w0 + l].state == DONE;
        }
        if (!waiting) continue;
        if (lanes < 32 || done) {
            *why = "a full-mask warp collective in a warp with " + std::to_string(lanes - done) + " live lanes";
            return false;
        }
        if (waiting < lanes) continue;
        for (size_t l = 0; l < lanes; l++) {
            fiber &f = r->fibers[w0 + l];
            if (f.mask != 0xffffffffu) {
                *why = "a warp collective with a partial mask";
                return false;
            }
            r->results[w0 + l] = f.slot;
        }
        for (size_t l = 0; l < lanes; l++) r->fibers[w0 + l].state = RUNNABLE;
    }
    return true;
}

bool run_block(block_run *r, dim3 grid, dim3 block, uint3 bid, uint64_t order_seed, std::string *why)
{
    size_t n = (size_t)block.x * block.y * block.z;
    if (r->fibers.size() < n) r->fibers.resize(n);
    r->results.assign(n + 32, 0);
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; i++) order[i] = i;
    uint64_t s = order_seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = n; i > 1; i--) { /* a different thread order every block */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        std::swap(order[i - 1], order[(s >> 33) % i]);
    }
    for (size_t i = 0; i < n; i++) {
        fiber &f = r->fibers[i];
        if (!f.stack) f.stack = (char *)malloc(kStack);
        /* stack tops staggered by 17 cache lines: at one stride they would
           share a cache set, and every switch would miss */
        stack_fresh(f.stack, kStack);
        context_make(&f.ctx, f.stack, kStack - i * 1088 % 32768, fiber_entry);
        f.state = RUNNABLE;
        f.ids.thread = make_uint3((unsigned)(i % block.x), (unsigned)(i / block.x % block.y),
                                  (unsigned)(i / ((size_t)block.x * block.y)));
        f.ids.block = bid;
        f.ids.block_dim = make_uint3(block.x, block.y, block.z);
        f.ids.grid_dim = make_uint3(grid.x, grid.y, grid.z);
    }
    for (;;) {
        bool left = false;
        for (size_t k = 0; k < n; k++) {
            fiber &f = r->fibers[order[k]];
            if (f.state != RUNNABLE) continue;
            r->current = &f;
            context_switch(&r->scheduler, &f.ctx);
        }
        if (!release_warps(r, why)) return false;
        size_t live = 0, at_barrier = 0;
        for (size_t i = 0; i < n; i++) {
            live += r->fibers[i].state != DONE;
            at_barrier += r->fibers[i].state == WAIT_BLOCK;
            left |= r->fibers[i].state == RUNNABLE;
        }
        if (!live) return true;
        if (left) continue;
        if (at_barrier != live) {
            *why = "threads wait at __syncthreads while " + std::to_string(live - at_barrier) +
                   " others wait in a warp collective";
            return false;
        }
        for (size_t i = 0; i < n; i++) /* every live thread arrived: exited ones do not count */
            if (r->fibers[i].state == WAIT_BLOCK) r->fibers[i].state = RUNNABLE;
    }
}

void run_grid(dim3 grid, dim3 block, size_t shared, const std::function<void()> &body)
{
    state &s = st();
    block_run &r = s.run;
    r.body = &body;
    r.shared.reset(new char[shared ? shared : 1]);
    block_run *outer = active;
    active = &r;
    unsigned long long launch = ++s.launches;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                std::string why;
                memset(r.shared.get(), 0xa5, shared); /* shared memory starts as garbage */
                if (!run_block(&r, grid, block, make_uint3(x, y, z), launch * 1000003ull + x, &why)) {
                    fprintf(stderr, "cuda_emu: kernel fault in block (%u,%u,%u): %s\n", x, y, z, why.c_str());
                    s.sticky = cudaErrorLaunchFailure;
                    active = outer;
                    for (fiber &f : r.fibers) free(f.stack); /* abandoned mid-kernel: fresh ones next time */
                    r.fibers.clear();
                    return;
                }
            }
    active = outer;
}

} // namespace

cudaError_t set_last(cudaError_t e)
{
    st().last = e;
    return e;
}

const thread_ids &here()
{
    static const thread_ids host{};
    return active && active->current ? active->current->ids : host;
}

void *dynamic_shared() { return active ? active->shared.get() : nullptr; }

void sync_block()
{
    block_run *r = active;
    r->current->state = WAIT_BLOCK;
    yield(r);
}

void warp_exchange(unsigned mask, uint64_t value, uint64_t all[32])
{
    block_run *r = active;
    fiber *f = r->current;
    f->mask = mask, f->slot = value, f->state = WAIT_WARP;
    yield(r);
    size_t w0 = (size_t)(f - r->fibers.data()) / 32 * 32;
    memcpy(all, &r->results[w0], sizeof(uint64_t) * 32);
}

bool is_device_range(const void *p, size_t bytes)
{
    state &s = st();
    uintptr_t a = (uintptr_t)p;
    auto it = s.device.upper_bound(a);
    if (it == s.device.begin()) return false;
    --it;
    return a >= it->first && a + bytes <= it->first + it->second;
}

} // namespace mst_emu

/* The CUDA guide: a 256-bit aligned pointer, ldm a multiple of 8 for 16-bit
 * elements and of 4 for 32-bit ones. */
void nvcuda::wmma::check_tile(const void *p, unsigned ldm, size_t elem)
{
    if ((uintptr_t)p % 32 == 0 && ldm % (16 / elem) == 0 && ldm >= 16) return;
    fprintf(stderr, "cuda_emu: a wmma tile at %p with ldm %u breaks the alignment rules\n", p, ldm);
    mst_emu::st().sticky = cudaErrorMisalignedAddress;
}

namespace mst_emu {

cudaError_t check_launch(dim3 grid, dim3 block, size_t shared, const void *kernel)
{
    state &s = st();
    size_t threads = (size_t)block.x * block.y * block.z;
    if (!threads || threads > 1024 || block.z > 64 || !grid.x || !grid.y || !grid.z || grid.y > 65535 || grid.z > 65535 ||
        grid.x > 0x7fffffffu)
        return cudaErrorInvalidConfiguration;
    auto it = s.optin.find(kernel);
    size_t allowed = it != s.optin.end() ? (size_t)it->second : kStaticShared;
    if (shared > allowed) return cudaErrorInvalidValue;
    return cudaSuccess;
}

cudaError_t submit_host(cudaStream_t stream, std::function<void()> work)
{
    if (stream && stream->invalidated) return set_last(cudaErrorStreamCaptureInvalidated);
    if (stream && stream->capturing)
        stream->recorded.push_back(std::move(work));
    else
        work();
    return cudaSuccess;
}

void submit(cudaStream_t stream, dim3 grid, dim3 block, size_t shared, const void *kernel, std::function<void()> body)
{
    state &s = st();
    if (s.sticky != cudaSuccess) return;
    cudaError_t e = check_launch(grid, block, shared, kernel);
    if (e != cudaSuccess) {
        set_last(e);
        return;
    }
    submit_host(stream, [grid, block, shared, body]() { /* an invalidated capture sets the last error */
        if (st().sticky == cudaSuccess) run_grid(grid, block, shared, body);
    });
}

cudaError_t api_entry() { return st().sticky; }

} // namespace mst_emu

using mst_emu::api_entry;

static mst_emu::state &st() { return mst_emu::st(); }

#define ENTER()                                          \
    do {                                                 \
        cudaError_t e_ = api_entry();                    \
        if (e_ != cudaSuccess) return e_;                \
    } while (0)

/* Calls that may synchronise or allocate are refused inside a capture and
 * invalidate it: the stream stays capturing, refuses all work, and
 * cudaStreamEndCapture reports the invalidation, as in CUDA. */
#define NOT_WHILE_CAPTURING()                                                       \
    do {                                                                            \
        if (st().capturing) {                                                       \
            st().capturing->invalidated = true;                                     \
            st().capturing->recorded.clear();                                       \
            return mst_emu::set_last(cudaErrorStreamCaptureUnsupported);            \
        }                                                                           \
    } while (0)


extern "C" {

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    if (device != 0) return mst_emu::set_last(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "CUDA emulator");
    prop->major = 9, prop->minor = 0;
    prop->totalGlobalMem = st().limit;
    prop->sharedMemPerBlock = mst_emu::kStaticShared;
    prop->sharedMemPerBlockOptin = mst_emu::kOptinShared;
    prop->maxThreadsPerBlock = 1024;
    prop->warpSize = 32;
    prop->multiProcessorCount = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    if (device != 0) return mst_emu::set_last(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)mst_emu::kOptinShared; return cudaSuccess;
    /* one small SM: kernels sized to a resident wave walk their work in grid-stride loops here */
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; return cudaSuccess;
    default: return mst_emu::set_last(cudaErrorNotSupported);
    }
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : mst_emu::set_last(cudaErrorInvalidDevice); }

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = st().sticky != cudaSuccess ? st().sticky : st().last;
    st().last = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (cuda_emu: see the fault above)";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    default: return "cuda_emu: an error";
    }
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    ENTER();
    NOT_WHILE_CAPTURING();
    mst_emu::state &s = st();
    size_t rounded = (bytes + 255) / 256 * 256;
    if (!bytes || s.used + rounded > s.limit) {
        *p = nullptr;
        return mst_emu::set_last(cudaErrorMemoryAllocation);
    }
    void *m = nullptr; /* exactly the bytes asked for: AddressSanitizer sees overruns */
    if (posix_memalign(&m, 256, bytes)) return mst_emu::set_last(cudaErrorMemoryAllocation);
    memset(m, 0xff, bytes); /* fresh device memory is garbage: NaN as floats */
    s.device[(uintptr_t)m] = bytes;
    s.used += rounded;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    /* after a fault every call fails with it, this one too; the host memory
       is given back all the same, as a dead context's teardown would, so that
       LeakSanitizer reports only buffers nobody freed */
    cudaError_t e = api_entry();
    if (!p) return e;
    if (e == cudaSuccess) NOT_WHILE_CAPTURING();
    mst_emu::state &s = st();
    auto it = s.device.find((uintptr_t)p);
    if (it == s.device.end()) return e != cudaSuccess ? e : mst_emu::set_last(cudaErrorInvalidValue);
    s.used -= (it->second + 255) / 256 * 256;
    s.device.erase(it);
    free(p);
    return e;
}

cudaError_t cudaMallocHost(void **p, size_t bytes)
{
    ENTER();
    NOT_WHILE_CAPTURING();
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : mst_emu::set_last(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total)
{
    *free_b = st().limit - st().used;
    *total = st().limit;
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    ENTER();
    bool dst_dev = mst_emu::is_device_range(dst, bytes), src_dev = mst_emu::is_device_range(src, bytes);
    bool ok = kind == cudaMemcpyHostToDevice   ? dst_dev && !src_dev
              : kind == cudaMemcpyDeviceToHost ? src_dev && !dst_dev
              : kind == cudaMemcpyDeviceToDevice ? src_dev && dst_dev
                                                 : false;
    if (!ok && bytes) {
        fprintf(stderr, "cuda_emu: cudaMemcpyAsync of %zu bytes (kind %d) outside device allocations or the wrong way\n",
                bytes, (int)kind);
        return mst_emu::set_last(cudaErrorInvalidValue);
    }
    return mst_emu::submit_host(stream, [dst, src, bytes]() { memmove(dst, src, bytes); });
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    (void)flags;
    ENTER();
    *stream = new CUstream_st;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    (void)stream;
    ENTER();
    NOT_WHILE_CAPTURING();
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    ENTER();
    NOT_WHILE_CAPTURING();
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
    ENTER();
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || (size_t)value > mst_emu::kOptinShared)
        return mst_emu::set_last(cudaErrorInvalidValue);
    st().optin[func] = value;
    return cudaSuccess;
}

static double now_ms()
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    ENTER();
    *event = new CUevent_st;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    ENTER();
    if (stream && stream->capturing) { /* mst never times inside a captured chunk */
        fprintf(stderr, "cuda_emu: cudaEventRecord inside a stream capture\n");
        return mst_emu::set_last(cudaErrorStreamCaptureUnsupported);
    }
    event->ms = now_ms();
    event->recorded = true;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    ENTER();
    NOT_WHILE_CAPTURING();
    return event->recorded ? cudaSuccess : mst_emu::set_last(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    ENTER();
    if (!start->recorded || !end->recorded) return mst_emu::set_last(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
    (void)mode;
    ENTER();
    if (!stream || stream->capturing || st().capturing) return mst_emu::set_last(cudaErrorIllegalState);
    stream->capturing = true;
    stream->recorded.clear();
    st().capturing = stream;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    ENTER();
    *graph = nullptr;
    if (!stream || st().capturing != stream) return mst_emu::set_last(cudaErrorIllegalState);
    stream->capturing = false;
    st().capturing = nullptr;
    if (stream->invalidated) {
        stream->invalidated = false;
        stream->recorded.clear();
        return mst_emu::set_last(cudaErrorStreamCaptureInvalidated);
    }
    CUgraph_st *g = new CUgraph_st;
    g->work.swap(stream->recorded);
    *graph = g;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    (void)flags;
    ENTER();
    *exec = new CUgraphExec_st;
    (*exec)->work = graph->work;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    ENTER();
    for (auto &w : exec->work) {
        cudaError_t e = mst_emu::submit_host(stream, w);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    delete exec;
    return cudaSuccess;
}

} // extern "C"
