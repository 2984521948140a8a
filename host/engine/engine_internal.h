/* Internal: the engine's state, shared by planning (engine.c) and the
 * layer-major forward pass (forward.c). */
#ifndef MST_ENGINE_INTERNAL_H
#define MST_ENGINE_INTERNAL_H

#include "../../kernels/backend.h"
#include "../model/model.h"
#include "trace.h"

#define TRY(x)                                 \
    do {                                       \
        mst_status _r = (x);                   \
        if (_r != MST_OK) return _r;           \
    } while (0)

/* TRY inside an NVTX range named `name`, timed as `family` when the engine
 * profiles (a family in [0, MST_NUM_FAMILIES); TIMED ranges do not nest). */
#define TIMED(e, family, name, x)                                                  \
    do {                                                                           \
        mst_trace_push((e)->trace, (name));                                        \
        mst_status _r = (e)->profiling ? (e)->be.timer_mark((e)->be.ctx, (family), 0, err) : MST_OK; \
        if (_r == MST_OK) _r = (x);                                                \
        if (_r == MST_OK && (e)->profiling) _r = (e)->be.timer_mark((e)->be.ctx, (family), 1, err); \
        mst_trace_pop((e)->trace);                                                 \
        if (_r != MST_OK) return _r;                                               \
    } while (0)

/* TRY inside an NVTX range named `name`. */
#define TRACED(e, name, x)                     \
    do {                                       \
        mst_trace_push((e)->trace, (name));    \
        mst_status _r = (x);                   \
        mst_trace_pop((e)->trace);             \
        if (_r != MST_OK) return _r;           \
    } while (0)

/* A block's counters: the attention's (mst_attn_count), then the spikes
 * that enter fc1 and fc2 after RSM (counted only where those sites mask). */
#define MST_FC1_KEPT MST_ATTN_NCOUNTS
#define MST_FC2_KEPT (MST_ATTN_NCOUNTS + 1)
#define MST_BLOCK_COUNTS (MST_ATTN_NCOUNTS + 2)

#define MST_NUM_MODULES 9

typedef struct {
    float *sc1, *qkv, *attn, *av, *proj, *sc2, *fc1, *fc2;
} block_state;

typedef struct {
    const float *host;
    float *dev;
} weight;

struct mst_engine {
    const mst_model *m;
    mst_engine_opts o;
    mst_backend be;
    mst_trace trace;
    int profiling;
    int counting;      /* the planning pass: allocations are only counted, into counted */
    size_t counted;
    mst_memory_plan mem;
    int in_graph;      /* chunk_layers is running inside graph_run (captured or run to be captured) */
    int T, Tc, B;
    float *img, *patches, *pe_z, *x, *bufA, *bufH, *pooled, *logits;
    uint64_t *sA, *sB, *sH; /* packed spikes that feed synapses (SNN): C wide (two), and 3C or hidden wide */
    uint64_t *keys;    /* {first image, first step} of the running chunk, for replayed graphs */
    float *logits_host;
    float *v_pe;
    block_state **bs; /* [stage][block] */
    float **v_red;    /* [stage] */
    float **state;    /* every membrane buffer, for reset and free */
    size_t *state_n;
    int num_state;
    weight *w;
    int num_w, cap_w;
    /* energy-accounting counters (SNN), and the tables mst_engine_stats fills.
       The ops count into dev_counts (backend memory, so a GPU never waits);
       spikes and attn_counts are the host copies stats read. */
    uint64_t *dev_counts;  /* [num_if_sites], then [blocks][MST_BLOCK_COUNTS] */
    size_t num_counts;
    uint64_t *spikes;      /* host copy: [num_if_sites] spikes fired */
    uint64_t *attn_counts; /* host copy: [blocks][MST_BLOCK_COUNTS], inside the spikes allocation */
    uint64_t images;
    mst_layer_stat *layer_stats;
    mst_site_stat *site_stats;
    mst_module_stat module_stats[MST_NUM_MODULES];
    char *names;           /* storage for layer_stats[].name */
};

const float *mst_engine_dev(const mst_engine *e, const float *host);

/* Elements of each activation buffer (floats; spike words for sA and sH)
 * for B images and a time chunk of Tc steps (engine.c says what each holds). */
typedef struct {
    size_t img, patches, pe_z, x, bufA, bufH, pooled, sA, sB, sH, logits;
} mst_buffer_sizes;
void mst_engine_buffer_sizes(const mst_model *m, mst_mode mode, int B, int Tc, mst_buffer_sizes *z);

#endif
