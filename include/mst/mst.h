/* mst: Masked Spiking Transformer inference. Public C API.
 *
 * Every call that can fail returns an mst_status and, when err is not NULL,
 * fills err->msg with one line naming the file, tensor, shape or value at
 * fault. The library never prints and never exits. */
#ifndef MST_MST_H
#define MST_MST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MST_OK = 0,
    MST_ERR_IO,          /* a file could not be opened or read */
    MST_ERR_FORMAT,      /* a file is not what it claims to be */
    MST_ERR_MISSING,     /* a required tensor or field is absent */
    MST_ERR_SHAPE,       /* shapes disagree */
    MST_ERR_VALUE,       /* a value is out of range (NaN weight, threshold <= 0) */
    MST_ERR_ARG,         /* a caller argument is invalid */
    MST_ERR_NOMEM,       /* an allocation failed */
    MST_ERR_UNSUPPORTED, /* valid, but not something mst can run */
    MST_ERR_DEVICE       /* a backend failure */
} mst_status;

typedef struct {
    mst_status status;
    char msg[512];
} mst_error;

const char *mst_strerror(mst_status s);

/* ---- Model ------------------------------------------------------------- */

typedef struct mst_model mst_model;

typedef struct {
    int img_size;        /* 0: take it from attn_mask buffers or __metadata__ */
    const char *dataset; /* .pth only: imagenet, cifar10, cifar100 (mean, std,
                            eval transform, class names) or another name; NULL:
                            from the file name, else none */
} mst_load_opts;

typedef struct {
    int dim, depth, heads, window, resolution;
    int mlp_hidden;
    int has_downsample;
} mst_stage_info;

/* Random Spike Masking sites (spec sections 4 and 4b), as bits: the released
 * code masks q, k and the attention scores; the paper's Figure 2e also the
 * spikes entering the MLP's two linear layers. */
#define MST_MASK_Q 1u
#define MST_MASK_K 2u
#define MST_MASK_ATTN 4u
#define MST_MASK_FC1 8u
#define MST_MASK_FC2 16u
#define MST_MASK_RELEASED (MST_MASK_Q | MST_MASK_K | MST_MASK_ATTN)
#define MST_MASK_ALL (MST_MASK_RELEASED | MST_MASK_FC1 | MST_MASK_FC2)

/* "q,k,attn,fc1", "all" -> MST_MASK_* bits; an unknown or empty name is an
 * MST_ERR_ARG naming it. */
mst_status mst_mask_sites_parse(const char *list, unsigned *out, mst_error *err);
/* The bits as a list in site order ("q,k,attn"; "" for none) into buf. */
const char *mst_mask_sites_name(unsigned sites, char *buf, size_t n);

typedef struct {
    int img_size, in_chans, patch_size, embed_dim;
    int num_stages;
    const mst_stage_info *stages; /* num_stages entries, owned by the model */
    int num_classes;
    int mlp_bn;                   /* MLP BatchNorms present (ImageNet variant) */
    int num_if_sites;
    int num_mask_sites;           /* numbered mask sites: q, k, attn, fc1, fc2 of every block */
    unsigned mask_sites;          /* the sites it was trained with (__metadata__ mask_sites), else MST_MASK_RELEASED */
    int64_t num_params;
    const char *dataset;          /* from __metadata__, "" when unknown */
    const float *mean, *std;      /* in_chans entries each, or NULL when unknown */
    /* eval preprocessing from __metadata__ (timm's names): "bilinear" or
       "bicubic" resize as Pillow does it, then a centre crop of crop_pct;
       "" and 0 when absent (then a plain bilinear resize to img_size) */
    const char *interpolation;
    double crop_pct;
} mst_arch;

mst_status mst_model_load(const char *path, const mst_load_opts *opts,
                          mst_model **out, mst_error *err);
void mst_model_free(mst_model *m);
/* A torch.save checkpoint (.pth) to the safetensors file
 * tools/convert_pth.py would write from it, byte for byte; refused, and
 * nothing written, unless mst could run the model. */
mst_status mst_convert(const char *in_pth, const char *out_safetensors, const mst_load_opts *opts, mst_error *err);
const mst_arch *mst_model_arch(const mst_model *m);
/* Class name i from the checkpoint's metadata, or NULL. */
const char *mst_model_class_name(const mst_model *m, int i);

/* Thresholds (lambda) of the IF sites, in execution order; names are the
 * checkpoint keys without ".up". Index in [0, arch->num_if_sites). */
const char *mst_model_site_name(const mst_model *m, int i);
float mst_model_site_threshold(const mst_model *m, int i);

/* ---- Engine ------------------------------------------------------------ */

typedef enum { MST_MODE_SNN = 0, MST_MODE_ANN = 1 } mst_mode;

/* Where the engine runs: AUTO takes CUDA device 0 when one answers, else the CPU. */
typedef enum { MST_DEVICE_AUTO = 0, MST_DEVICE_CPU = 1, MST_DEVICE_CUDA = 2 } mst_device_kind;

/* GEMM operands: FP32 is the parity mode (no TF32); FP16/BF16 (CUDA only)
 * convert operands and accumulate in fp32; membranes are always fp32. */
typedef enum { MST_PRECISION_FP32 = 0, MST_PRECISION_FP16 = 1, MST_PRECISION_BF16 = 2 } mst_precision;

typedef struct {
    mst_mode mode;
    int timesteps;      /* T; ignored (1) in ANN mode */
    int time_chunk;     /* Tc: steps run layer-major at once; 0 = min(T, 8) */
    int max_batch;      /* images per engine call */
    double mask_ratio;  /* RSM p in [0, 1] */
    unsigned mask_sites; /* MST_MASK_* bits where RSM applies; 0: the model's (mst_arch.mask_sites) */
    uint64_t seed;
    mst_device_kind device;
    int device_index;   /* CUDA device number */
    mst_precision precision;
    int cuda_graphs;    /* CUDA: capture each time chunk's work once and replay it */
    int fused_synapse;  /* CUDA fp16/bf16: each synapse's GEMM and IF scan in one kernel, MST_FUSED_*; 0: two kernels */
    size_t memory_limit; /* bytes the engine may plan for; 0: the device's free memory (CUDA), no limit (CPU) */
    int count_spikes;   /* SNN: count spikes per IF and mask site for mst_engine_stats (atomics on a GPU) */
} mst_engine_opts;

/* mst_engine_opts.fused_synapse: tensor-core tiles through WMMA (any GPU
 * from sm_80), or Hopper's warpgroup MMA with the weights brought by the
 * bulk-copy engine (sm_90 only; opt-in until measured on a GPU). */
#define MST_FUSED_WMMA 1
#define MST_FUSED_WGMMA 2

typedef struct mst_engine mst_engine;

mst_status mst_engine_create(const mst_model *m, const mst_engine_opts *opts,
                             mst_engine **out, mst_error *err);
void mst_engine_free(mst_engine *e);

/* Runs n <= max_batch images (float32 [n][C][H][W], normalised) whose
 * positions in the evaluation order are first_index .. first_index+n-1 (the
 * masks depend on that position, never on the batch slot). Writes the
 * cumulative logits after every step to cum_logits[t][n][classes]
 * (t < T in SNN mode, t < 1 in ANN mode). */
mst_status mst_engine_run(mst_engine *e, const float *images, int n,
                          uint64_t first_index, float *cum_logits, mst_error *err);

/* Number of logit rows per image the engine writes: T or 1. */
int mst_engine_steps_out(const mst_engine *e);
/* Steps per time chunk it runs: the option, or its default, at most T, and
 * lowered where that chunk's memory plan would not fit (mst_engine_memory). */
int mst_engine_time_chunk(const mst_engine *e);

/* The memory plan, made before anything is allocated: every buffer sized for
 * what the forward pass stores in it, the IF membranes, the weights the
 * device holds and the backend's scratch for the largest op. */
typedef struct {
    size_t planned;        /* bytes, all of it, at the time chunk it runs */
    size_t scratch;        /* of which the backend's scratch (grows during the first chunk) */
    size_t available;      /* what it had to fit in (0: no limit) */
    int requested_chunk;   /* the time chunk asked for (or its default) */
} mst_memory_plan;
void mst_engine_memory(const mst_engine *e, mst_memory_plan *out);
/* The plan an engine of these options would make at the time chunk asked
 * for, whether it fits or not, and what it would have to fit in; allocates
 * no device memory. */
mst_status mst_engine_plan(const mst_model *m, const mst_engine_opts *opts, mst_memory_plan *out, mst_error *err);

/* The MST_MASK_* sites it masks (the option, or the model's). */
unsigned mst_engine_mask_sites(const mst_engine *e);

/* The backend it runs on: "cpu" or e.g. "cuda:0 (NVIDIA H200, sm_90)". */
const char *mst_engine_device(const mst_engine *e);

/* Host memory for image batches that the engine copies from fastest (pinned
 * on CUDA); free it with mst_engine_host_free before mst_engine_free. */
mst_status mst_engine_host_alloc(mst_engine *e, size_t bytes, void **out, mst_error *err);
void mst_engine_host_free(mst_engine *e, void *p);

/* ---- Timing (mst bench) ---------------------------------------------------- */

/* Where the time goes, by op family: spike-fed synapses (GEMM + the IF site
 * they feed), the other IF scans, window attention, and the rest (patch
 * embedding, residual adds, patch merging, head, copies). */
typedef enum { MST_FAMILY_SYNAPSE, MST_FAMILY_IF, MST_FAMILY_ATTENTION, MST_FAMILY_OTHER, MST_NUM_FAMILIES } mst_family;

/* On: every op is bracketed by timers (host clocks on the CPU, CUDA events on
 * the GPU); costs a little, so benchmarks time throughput with it off. */
void mst_engine_set_profiling(mst_engine *e, int on);
/* Milliseconds per family since the last call (waits for the device). */
mst_status mst_engine_profile(mst_engine *e, double ms[MST_NUM_FAMILIES], mst_error *err);
/* The most memory the backend has held (device memory on CUDA), in bytes. */
size_t mst_engine_peak_bytes(const mst_engine *e);
/* A measured matrix-product rate of the device in FLOP/s (the floor the
 * benchmark compares with): sgemm through the CPU backend's GEMM path, or a
 * large cuBLAS product in the engine's precision (bf16 for fp32 mode too,
 * the dense floor design.md names). */
mst_status mst_engine_peak_flops(mst_engine *e, double *flops, mst_error *err);

/* The work of the backend's op kinds, each against its own floor (mst bench
 * on the CPU): the synapse's adds (one per input spike and output channel)
 * and window attention's element operations (score, softmax term, product
 * of the weighted sum) against the machine's measured rate of adding
 * cache-resident rows; the IF scans' and layout copies' bytes against a
 * measured copy bandwidth. */
typedef enum { MST_OP_SYNAPSE, MST_OP_IF_SCAN, MST_OP_ATTENTION, MST_OP_LAYOUT, MST_NUM_OP_KINDS } mst_op_kind;
typedef struct {
    double units, seconds; /* work done (adds, bytes or element operations) and the wall time it took */
} mst_op_work;
/* Work per op kind since the last call; MST_ERR_UNSUPPORTED where the
 * backend does not count it (CUDA). */
mst_status mst_engine_op_work(mst_engine *e, mst_op_work w[MST_NUM_OP_KINDS], mst_error *err);
/* The floors, measured now with every thread: units per second per kind. */
mst_status mst_engine_op_floors(mst_engine *e, double floor[MST_NUM_OP_KINDS], mst_error *err);

/* Dense-equivalent multiply-accumulates of one image: per timestep of the
 * loop (every matmul counted as a GEMM over its operands, attention's two
 * products included) and once per image (the patch embedding). */
void mst_model_macs(const mst_model *m, double *per_step, double *once);

/* Bytes one image-step must move through memory in mst's own formats: each
 * op's input read once and output written once, spikes between layers as
 * bits, analog tensors (residual stream, potentials into the residual, the
 * attention output) as fp32. Weights and membranes (read and written once
 * per time chunk, not per step) are left out. */
double mst_model_bytes(const mst_model *m);

/* ---- Energy accounting (spec section 6; SNN mode) ------------------------ */

typedef struct {
    const char *name;  /* checkpoint-style, e.g. "layers.0.blocks.1.mlp.fc1", "layers.0.blocks.1.attn.qk" */
    double spikes_in;  /* spikes into the layer, after masking (0 for analog layers) */
    double spikes_unmasked; /* the spikes that reached its RSM site (spikes_in where none masks) */
    double sops;       /* synaptic operations: spikes x fan-out */
    double macs;       /* multiply-accumulates of analog layers */
} mst_layer_stat;

/* The layers summed by kind over the whole network: where the energy goes. */
typedef struct {
    const char *name;    /* patch_embed, attn.qkv, attn.qk, attn.av, attn.proj, mlp.fc1, mlp.fc2, patch_merge, head */
    const char *group;   /* "patch embedding", "attention", "MLP", "patch merging", "head" */
    double sops, macs, energy_j;
    double sops_dropped; /* SOPs that RSM removed at its inputs: spikes dropped x fan-out */
    int in_total;        /* 0 for the head, listed separately (spec section 6) */
} mst_module_stat;

typedef struct {
    const char *name;  /* IF site, as in the checkpoint without ".up" */
    double spikes;     /* spikes fired (q, k, attn: before masking) */
    double neurons;    /* neuron-steps: its firing rate is spikes / neurons */
} mst_site_stat;

typedef struct {
    double images, steps;              /* images run, timesteps each */
    int num_layers, num_sites;
    const mst_layer_stat *layers;      /* synaptic and analog matmuls, in execution order */
    const mst_site_stat *sites;        /* every IF site, in execution order */
    int num_modules;
    const mst_module_stat *modules;    /* by module, in execution order, the head last */
    double sops, macs;                 /* totals over the layers */
    double energy_j;                   /* 0.9 pJ x sops + 4.6 pJ x macs */
    double head_macs, softmax_exps, norm_elems; /* listed separately, not in energy_j */
} mst_stats;

/* Totals over every image run since the engine was made or the counters
 * reset (SNN mode only). The arrays stay valid until the next call. */
mst_status mst_engine_stats(mst_engine *e, mst_stats *out, mst_error *err);
mst_status mst_engine_reset_stats(mst_engine *e, mst_error *err);
/* The raw spike counters behind mst_engine_stats (an engine that counts
 * spikes) and the images they cover. A run split over files or processes
 * adds its parts' counters up and sets the sum into one engine of the same
 * model and options: its stats are then those of a single run. */
size_t mst_engine_num_counts(const mst_engine *e);
/* CUDA devices that answer: 0 without the CUDA backend, a driver or a GPU. */
int mst_cuda_devices(void);
mst_status mst_engine_get_counts(mst_engine *e, uint64_t *counts, uint64_t *images, mst_error *err);
mst_status mst_engine_set_counts(mst_engine *e, const uint64_t *counts, uint64_t images, mst_error *err);

#ifdef __cplusplus
}
#endif
#endif
