/* The CPU reference backend's ops (one file per op family). */
#ifndef MST_CPU_OPS_H
#define MST_CPU_OPS_H

#include "../backend.h"

mst_status mst_cpu_linear(void *ctx, const float *x, long M, int K, const float *w, const float *b,
                          int N, float *y, mst_error *err);
mst_status mst_cpu_synapse_if(void *ctx, const mst_synapse_args *a, mst_error *err);
mst_status mst_cpu_if_scan(void *ctx, const mst_if_args *a, mst_error *err);
mst_status mst_cpu_qcfs(void *ctx, const mst_if_args *a, mst_error *err);
mst_status mst_cpu_window_attention(void *ctx, const mst_attn_args *a, mst_error *err);
mst_status mst_cpu_mask_spikes(void *ctx, const mst_mask_args *a, mst_error *err);
mst_status mst_cpu_patchify(void *ctx, const float *img, int B, int cin, int res, int P, float *out,
                            mst_error *err);
mst_status mst_cpu_patch_merge(void *ctx, const float *x, long rows, int res, int C, float *out,
                               mst_error *err);
mst_status mst_cpu_residual(void *ctx, float *x, const float *s, float lam, const float *scale,
                            const float *shift, int C, long n, mst_error *err);
mst_status mst_cpu_ln_mean(void *ctx, const float *x, long rows, int N, int C, const float *w,
                           const float *b, float *out, mst_error *err);

#endif
