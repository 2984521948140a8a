/* NVTX ranges (domain "mst") around every chunk and layer, so that Nsight
 * Systems shows the engine's structure. Without CUDA they compile to nothing. */
#ifndef MST_ENGINE_TRACE_H
#define MST_ENGINE_TRACE_H

#ifdef MST_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>

typedef nvtxDomainHandle_t mst_trace;

static inline mst_trace mst_trace_open(void) { return nvtxDomainCreateA("mst"); }
static inline void mst_trace_close(mst_trace d) { nvtxDomainDestroy(d); }

static inline void mst_trace_push(mst_trace d, const char *name)
{
    nvtxEventAttributes_t a = {0};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = name;
    nvtxDomainRangePushEx(d, &a);
}

static inline void mst_trace_pop(mst_trace d) { nvtxDomainRangePop(d); }
#else
typedef void *mst_trace;
static inline mst_trace mst_trace_open(void) { return 0; }
static inline void mst_trace_close(mst_trace d) { (void)d; }
static inline void mst_trace_push(mst_trace d, const char *name) { (void)d, (void)name; }
static inline void mst_trace_pop(mst_trace d) { (void)d; }
#endif

#endif
