/* The typed model: checkpoint tensors with BatchNorms and thresholds folded.
 *
 * Convention: every IF site consumes its input in units of its own threshold
 * (z = u / lambda) and emits 0/1 spikes (QCFS levels in ANN mode); the
 * producing lambda is folded into the consuming weights. The residual stream
 * x stays in real units. */
#ifndef MST_MODEL_H
#define MST_MODEL_H

#include "mst/mst.h"

/* A linear layer, input-major: w [n_in][n_out], so a spike on input k adds
 * row k (synaptic accumulation) and y = x w + b is a plain row-major GEMM. */
typedef struct {
    float *w; /* [n_in][n_out] */
    float *b; /* [n_out] */
    int n_out, n_in;
} mst_dense;

typedef struct {
    int dim, heads, window, shift, res, mlp_hidden;
    float *sc1_scale, *sc1_shift; /* BN1 / lambda_sc1, the IF_sc1 input affine */
    mst_dense qkv;                /* lambda_sc1 in; 1/lambda_{q,k,v} out */
    float qk_scale;               /* lambda_q lambda_k d^-0.5 / lambda_attn */
    float lam_attn;
    float v_scale;                /* lambda_v / lambda_av */
    float *rel_bias;              /* [heads][w*w][w*w], B_rel expanded */
    mst_dense proj;               /* lambda_av in; 1/lambda_proj out */
    float lam_proj;
    float *bn2_scale, *bn2_shift; /* BN2, real units */
    float *sc2_scale, *sc2_shift; /* 1/lambda_sc2 (shift 0): the IF_sc2 input affine */
    mst_dense fc1, fc2;           /* MLP with its BatchNorms and lambdas folded */
    float lam_fc2;
    int mask_site;                /* site id of the q mask; k and attn follow */
    int mlp_mask_site;            /* site id of the fc1 mask; fc2 follows */
    int index;                    /* the block's position in execution order */
    int site;                     /* index of IF_sc1 among the model's IF sites; the block's 10 follow */
    char name[48];                /* "layers.S.blocks.B", for traces */
} mst_block;

typedef struct {
    mst_stage_info info;
    mst_block *blocks;
    mst_dense reduction; /* BN folded in, 1/lambda_red out, no bias in the checkpoint */
    float lam_red;
    int site_red;        /* index of IF_red among the model's IF sites */
} mst_stage;

struct mst_model {
    mst_arch arch;
    mst_stage_info *infos;
    mst_dense pe; /* conv as [C0][Cin*P*P], BN_pe and 1/lambda_pe folded */
    float lam_pe;
    mst_stage *stages;
    float *norm_w, *norm_b; /* final LayerNorm */
    mst_dense head;
    char **site_names;
    float *site_lams;
    char **class_names;
    int num_class_names;
    char *dataset;
    char *interpolation;
    float *mean, *std;
};

struct mst_safetensors;
/* The model of an opened checkpoint's tensor table (mst_model_load opens
 * the file, mst convert validates what it is about to write). */
mst_status mst_model_from_table(struct mst_safetensors *st, const mst_load_opts *opts, mst_model **out, mst_error *err);

#endif
