/* The backend table: every op the engine runs, on memory the backend owns.
 * The CPU backend is the reference; a CUDA backend implements the same table.
 * Tensors are row-major. Time-batched activations are [steps][batch][tokens][C]. */
#ifndef MST_BACKEND_H
#define MST_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "mst/mst.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One IF (or QCFS) site over `steps` timesteps of R neurons, in rows of
 * `channels`. The input of neuron r at step t is in[t*in_tstride + r]
 * (in_tstride 0: the same input at every step), optionally through a
 * per-channel affine (channel = r % C), already in units of the site's
 * threshold. The output is either out[t*R + r] = spike * out_scale, or, when
 * `bits` is set (IF only), the spikes bit-packed (mst_bits.h) as
 * [steps][R / channels][mst_spike_words(channels)]. */
typedef struct {
    const float *in;
    long in_tstride;
    const float *scale, *shift; /* [channels] or NULL */
    int channels;
    float *v;                   /* [R] membrane, threshold units (SNN only) */
    float *out;                 /* [steps][R]; may alias in when in_tstride == R */
    float out_scale;
    uint64_t *bits;             /* packed spikes instead of out, or NULL */
    uint64_t *count;            /* IF: += spikes fired in this call, or NULL */
    int steps;
    long R;
} mst_if_args;

/* Window attention of one block over `steps` timesteps, spec section 3:
 * q, k, v activations in (SNN: packed spikes; ANN: QCFS levels), the IF_av
 * input z out. */
/* The softmax factors exp(A) into exp(bias) x exp(lambda_attn * level);
 * above this threshold that product could leave float range. */
#define MST_MAX_ATTN_THRESHOLD 160.0f

typedef struct {
    const uint64_t *qkv_bits; /* SNN: [steps][batch][res*res][mst_spike_words(3*dim)] */
    const float *qkv;       /* ANN: [steps][batch][res*res][3*dim] */
    float *out;             /* [steps][batch][res*res][dim] */
    float *v_attn;          /* [batch][windows][heads][w*w][w*w] IF_attn membrane */
    const float *rel_bias;  /* [heads][w*w][w*w] */
    int steps, t0, batch, res, dim, heads, window, shift;
    float qk_scale, lam_attn, v_scale;
    mst_mode mode;
    uint64_t seed, first_image;
    uint32_t site_q;        /* k is site_q + 1, attn site_q + 2 */
    uint64_t mask_threshold[3]; /* q, k, attn (mst_mask_threshold); 0: that site keeps every spike */
    uint64_t *counts;       /* SNN: += spike counts, indexed by mst_attn_count, or NULL */
    /* backend memory holding {first_image, t0}, read by the kernel instead of
       the two fields above when set: lets a captured chunk replay for other
       images and steps (CUDA graphs); NULL: use the fields */
    const uint64_t *keys;
} mst_attn_args;

/* What window attention counts (SNN): spikes of q, k and v as they arrive,
 * q and k after RSM, and attention-score spikes before and after RSM. */
typedef enum {
    MST_ATTN_Q, MST_ATTN_K, MST_ATTN_V, MST_ATTN_Q_KEPT, MST_ATTN_K_KEPT, MST_ATTN_S, MST_ATTN_S_KEPT,
    MST_ATTN_NCOUNTS
} mst_attn_count;

/* Random Spike Masking where spikes enter a linear layer (spec section 4b:
 * the MLP's fc1 and fc2), in place over `steps` timesteps: rows are
 * [steps][batch][tokens], tokens row-major at the stage's resolution, so an
 * element's mask offset is token * channels + channel. */
typedef struct {
    uint64_t *bits;         /* SNN: [steps][batch*tokens][mst_spike_words(channels)] */
    float *levels;          /* ANN: [steps][batch*tokens][channels] QCFS levels */
    int steps, t0, batch, tokens, channels;
    uint64_t seed, first_image;
    uint32_t site;
    uint64_t threshold;     /* mst_mask_threshold(p), > 0 */
    uint64_t *kept;         /* SNN: += spikes that survive, or NULL */
    const uint64_t *keys;   /* {first_image, t0} in backend memory for replayed graphs, as mst_attn_args */
} mst_mask_args;

/* An op that multiplies by a weight matrix, for memory planning: rows x K
 * inputs (packed spikes when spikes is set: a synapse) times K x N. */
typedef struct {
    long rows;
    int K, N, spikes;
} mst_gemm_op;

/* The IF site that reads the residual stream right after a fold (sc2, or
 * the next block's sc1): an if_scan with input affine over the new x, run
 * in the same pass. */
typedef struct {
    float *v;                   /* [R][N] membranes, or NULL: none */
    const float *scale, *shift; /* [N] input affine (BatchNorm folded), or NULL */
    uint64_t *bits;             /* [steps][R][mst_spike_words(N)] */
    uint64_t *count;            /* += its spikes, or NULL */
} mst_fold_site;

/* Where a synapse's spikes go when they feed the residual stream rather
 * than an IF site: x = mst_residual(x, spike * out_scale, lam, scale,
 * shift), the residual op folded into the synapse's last pass; then, where
 * next.v is set, the IF site that reads x. */
typedef struct {
    float *x;                   /* [steps][R][N], or NULL: no fold */
    float lam;
    const float *scale, *shift; /* [N] or NULL */
    mst_fold_site next;
} mst_residual_fold;

/* A synapse fed by packed spikes and the IF site it feeds (synapse_if). */
typedef struct {
    const uint64_t *x;      /* [steps][R][mst_spike_words(K)] */
    int steps;
    long R;
    int K, N;
    const float *w, *b;     /* w [K][N]; b [N] or NULL */
    int w_fixed;            /* w and b hold these values at these addresses for the backend's life
                               (the engine's weights): a backend may keep a copy in its own layout */
    float *v;               /* [R][N] membranes */
    uint64_t *bits;         /* spikes packed, or NULL; then */
    float *out;             /* [steps][R][N] spikes * out_scale, or NULL; then */
    mst_residual_fold fold; /* the spikes * out_scale into the residual stream */
    float out_scale;
    uint64_t *count;        /* += spikes fired, or NULL */
} mst_synapse_args;

typedef struct mst_backend {
    const char *name;
    void *ctx;
    int host_memory; /* buffers are host memory: weights need no upload */
    void (*destroy)(struct mst_backend *b);
    mst_status (*alloc)(void *ctx, size_t bytes, void **out, mst_error *err);
    void (*release)(void *ctx, void *p);
    mst_status (*upload)(void *ctx, void *dst, const void *src, size_t bytes, mst_error *err);
    mst_status (*download)(void *ctx, void *dst, const void *src, size_t bytes, mst_error *err);
    mst_status (*fill)(void *ctx, float *p, float value, size_t n, mst_error *err);
    /* timers around ops: mark(family, 0) ... mark(family, 1); collect adds
       the milliseconds per family since the last collect (after a sync) */
    mst_status (*timer_mark)(void *ctx, int family, int end, mst_error *err);
    mst_status (*timer_collect)(void *ctx, double *ms, int families, mst_error *err);
    size_t (*peak_bytes)(void *ctx);
    /* Bytes of scratch (and of weight copies) the backend will hold to run
       these ops, each at most once at a time; and the device memory free now
       (NULL: no limit the backend knows of). */
    size_t (*scratch_bytes)(void *ctx, const mst_gemm_op *ops, int n);
    mst_status (*free_bytes)(void *ctx, size_t *bytes, mst_error *err);
    mst_status (*peak_flops)(void *ctx, double *flops, mst_error *err);
    /* work per op kind since the last call, and each kind's floor
       (mst_engine_op_work); NULL where the backend does not count */
    mst_status (*op_work)(void *ctx, mst_op_work *w, int kinds, mst_error *err);
    mst_status (*op_floors)(void *ctx, double *floor, int kinds, mst_error *err);
    /* Runs fn(arg), which only queues device work, as a graph kept under
       `key`: the first call runs it directly (scratch grows then), the second
       captures and replays it, later calls replay. NULL where not supported. */
    mst_status (*graph_run)(void *ctx, long key, mst_status (*fn)(void *arg, mst_error *err), void *arg,
                            mst_error *err);
    /* host memory that uploads and downloads go fastest from (pinned on CUDA) */
    mst_status (*host_alloc)(void *ctx, size_t bytes, void **out, mst_error *err);
    void (*host_release)(void *ctx, void *p);

    /* images [B][Cin][res*P][res*P] -> patches [B][res*res][Cin*P*P] (conv as GEMM) */
    mst_status (*patchify)(void *ctx, const float *img, int B, int cin, int res, int P, float *out,
                           mst_error *err);
    /* y[M][N] = x[M][K] w[K][N] + b[N], for analog inputs */
    mst_status (*linear)(void *ctx, const float *x, long M, int K, const float *w, const float *b, int N,
                         float *y, mst_error *err);
    /* A synapse fed by packed spikes and the IF site it feeds, over `steps`
     * steps: z = x w + b (each input spike adds its weight row: a synaptic
     * operation) goes straight into the membranes, and the spikes come out
     * packed to bits, or as out * out_scale, or folded into the residual
     * stream (mst_synapse_args). */
    mst_status (*synapse_if)(void *ctx, const mst_synapse_args *a, mst_error *err);
    mst_status (*if_scan)(void *ctx, const mst_if_args *a, mst_error *err);
    mst_status (*qcfs)(void *ctx, const mst_if_args *a, mst_error *err);
    mst_status (*window_attention)(void *ctx, const mst_attn_args *a, mst_error *err);
    mst_status (*mask_spikes)(void *ctx, const mst_mask_args *a, mst_error *err);
    /* x = (x + lam * s) * scale + shift, channel = i % C; scale/shift may be NULL */
    mst_status (*residual)(void *ctx, float *x, const float *s, float lam, const float *scale,
                           const float *shift, int C, long n, mst_error *err);
    /* x [rows][res*res][C] -> [rows][(res/2)^2][4C], order x0,x1,x2,x3 of spec section 3 */
    mst_status (*patch_merge)(void *ctx, const float *x, long rows, int res, int C, float *out,
                              mst_error *err);
    /* mean over tokens of LayerNorm(x): x [rows][N][C] -> out [rows][C] */
    mst_status (*ln_mean)(void *ctx, const float *x, long rows, int N, int C, const float *w,
                          const float *b, float *out, mst_error *err);
} mst_backend;

mst_status mst_backend_cpu(mst_backend *out, mst_error *err);

#ifdef MST_HAVE_CUDA
/* Device `device` with one stream and cuBLAS handle; fails with the reason
 * (no driver, no such device) rather than falling back. */
#define MST_CUDA_FUSED_SYNAPSE 1u /* flags: the fp16/bf16 synapse as one GEMM + IF kernel (WMMA) */
#define MST_CUDA_WGMMA_SYNAPSE 2u /* ... on Hopper's wgmma (sm_90 only) */
mst_status mst_backend_cuda(mst_backend *out, int device, mst_precision precision, unsigned flags, mst_error *err);
/* CUDA devices that answer (0 where the driver is missing or too old). */
int mst_cuda_device_count(void);
/* Raw Philox numbers offset .. offset+n-1 of a subsequence into device memory,
 * drawn as the attention kernel draws its masks (for the mask test). */
mst_status mst_cuda_draw(void *ctx, uint64_t seed, uint64_t sub, uint64_t offset, long n, uint32_t *out, mst_error *err);
#endif

#ifdef __cplusplus
}
#endif
#endif
