/* One batch, layer-major over chunks of timesteps (spec section 3). */
#include <math.h>
#include <string.h>

#include "../../kernels/common/mst_math.h"
#include "../error.h"
#include "engine_internal.h"

#define D(p) mst_engine_dev(e, (p))

typedef struct {
    int steps, t0, n;     /* steps in this chunk, first step, images in the batch */
    uint64_t first_image;
} chunk;

/* An IF site (SNN) or QCFS site (ANN) over one chunk. A site that feeds a
 * synapse writes packed spikes to `bits` in SNN mode and levels to `out` in
 * ANN mode; a site that feeds the residual stream (bits NULL) writes
 * spike * out_scale to `out`. Its spikes are counted into site idx (-1: not counted). */
static mst_status site(mst_engine *e, const chunk *k, int idx, float *v, const float *in, long tstride,
                       const float *scale, const float *shift, int C, float *out, float out_scale, uint64_t *bits,
                       long R, mst_error *err)
{
    int snn = e->o.mode == MST_MODE_SNN;
    mst_if_args a = {.in = in, .in_tstride = tstride, .scale = scale, .shift = shift, .channels = C, .v = v,
                     .out = out, .out_scale = out_scale, .bits = snn ? bits : NULL, .count = idx >= 0 && e->o.count_spikes ? e->dev_counts + idx : NULL,
                     .steps = k->steps, .R = R};
    return snn ? e->be.if_scan(e->be.ctx, &a, err) : e->be.qcfs(e->be.ctx, &a, err);
}

static mst_status linear(mst_engine *e, const float *x, long M, const mst_dense *d, float *y, mst_error *err)
{
    return e->be.linear(e->be.ctx, x, M, d->n_in, D(d->w), D(d->b), d->n_out, y, err);
}

/* A layer fed by an IF site, and the IF site it feeds. SNN: packed spikes in,
 * the fused synapse + IF op; ANN: QCFS levels in, a GEMM, then QCFS. The
 * output goes where site() would put it (bits, or out * out_scale); with
 * fold.x set (SNN), into the residual stream instead. */
static mst_status synapse(mst_engine *e, const chunk *k, int idx, const float *levels, const uint64_t *spikes,
                          const mst_dense *d, float *v, long R, float *out, float out_scale, uint64_t *bits,
                          mst_residual_fold fold, mst_error *err)
{
    uint64_t *count = idx >= 0 && e->o.count_spikes ? e->dev_counts + idx : NULL;
    if (e->o.mode == MST_MODE_SNN) {
        mst_synapse_args a = {.x = spikes, .steps = k->steps, .R = R, .K = d->n_in, .N = d->n_out, .w = D(d->w),
                              .b = D(d->b), .w_fixed = 1, .v = v, .bits = bits, .out = fold.x ? NULL : out, .fold = fold,
                              .out_scale = out_scale, .count = count};
        return e->be.synapse_if(e->be.ctx, &a, err);
    }
    TRY(linear(e, levels, R * k->steps, d, out, err));
    TRY(site(e, k, idx, v, out, R * d->n_out, NULL, NULL, d->n_out, out, out_scale, NULL, R * d->n_out, err));
    if (!fold.x) return MST_OK;
    return e->be.residual(e->be.ctx, fold.x, out, fold.lam, fold.scale, fold.shift, d->n_out,
                          R * k->steps * d->n_out, err);
}

/* The block's counters (engine_internal.h), or NULL when not counting. */
static uint64_t *block_counts(mst_engine *e, const mst_block *b)
{
    return e->o.count_spikes ? e->dev_counts + e->m->arch.num_if_sites + (long)b->index * MST_BLOCK_COUNTS : NULL;
}

/* The RSM threshold of a site kind (MST_MASK_*): 0 where it is not masked. */
static uint64_t threshold(const mst_engine *e, unsigned kind)
{
    return e->o.mask_sites & kind ? mst_mask_threshold(e->o.mask_ratio) : 0;
}

static mst_status attention(mst_engine *e, const chunk *k, const mst_block *b, const block_state *s,
                            mst_error *err)
{
    mst_attn_args a = {.qkv = e->bufH, .qkv_bits = e->sH, .out = e->bufA, .v_attn = s->attn, .rel_bias = D(b->rel_bias),
                       .steps = k->steps, .t0 = k->t0, .batch = k->n, .res = b->res, .dim = b->dim,
                       .heads = b->heads, .window = b->window, .shift = b->shift,
                       .qk_scale = b->qk_scale, .lam_attn = b->lam_attn, .v_scale = b->v_scale,
                       .mode = e->o.mode, .seed = e->o.seed, .first_image = k->first_image,
                       .site_q = (uint32_t)b->mask_site,
                       .mask_threshold = {threshold(e, MST_MASK_Q), threshold(e, MST_MASK_K),
                                          threshold(e, MST_MASK_ATTN)},
                       .counts = block_counts(e, b),
                       .keys = e->in_graph ? e->keys : NULL};
    return e->be.window_attention(e->be.ctx, &a, err);
}

/* RSM on the spikes (levels in ANN mode) about to enter fc1 (j = 0) or fc2
 * (j = 1), spec section 4b; nothing where that site is not masked. */
static mst_status mlp_mask(mst_engine *e, const chunk *k, const mst_block *b, int j, mst_error *err)
{
    uint64_t th = threshold(e, j ? MST_MASK_FC2 : MST_MASK_FC1), *counts = block_counts(e, b);
    if (!th) return MST_OK;
    int snn = e->o.mode == MST_MODE_SNN;
    mst_mask_args a = {.bits = snn ? (j ? e->sH : e->sB) : NULL, .levels = snn ? NULL : (j ? e->bufH : e->bufA),
                       .steps = k->steps, .t0 = k->t0, .batch = k->n, .tokens = b->res * b->res,
                       .channels = j ? b->mlp_hidden : b->dim, .seed = e->o.seed, .first_image = k->first_image,
                       .site = (uint32_t)(b->mlp_mask_site + j), .threshold = th,
                       .kept = counts && snn ? counts + MST_FC1_KEPT + j : NULL,
                       .keys = e->in_graph ? e->keys : NULL};
    return e->be.mask_spikes(e->be.ctx, &a, err);
}

/* The IF site that reads x right after a fold, run inside it (SNN). */
static mst_fold_site fold_site(mst_engine *e, int idx, float *v, const float *scale, const float *shift)
{
    return (mst_fold_site){v, scale, shift, e->sB, e->o.count_spikes ? e->dev_counts + idx : NULL};
}

/* One Swin block. SNN: sc1's and sc2's spikes go to sB, written by the
 * folds of the previous block's fc2 (sc1 then arrives done) and of proj,
 * while those synapses still read their inputs from sA and sH. next: the
 * block after this one in the stage, whose sc1 fc2's fold runs, or NULL. */
static mst_status block(mst_engine *e, const chunk *k, const mst_block *b, const block_state *s, const mst_block *next,
                        const block_state *next_s, int sc1_done, mst_error *err)
{
    int C = b->dim, snn = e->o.mode == MST_MODE_SNN;
    long R = (long)k->n * b->res * b->res;
    /* site indices: sc1 q k v attn av proj sc2 fc1 fc2 from b->site; q, k, v and
       attn are counted by the attention op, so the qkv synapse counts nothing */
    int i = b->site;
    const mst_residual_fold none = {0};
    if (!sc1_done)
        TIMED(e, MST_FAMILY_IF, "sc1", site(e, k, i, s->sc1, e->x, R * C, D(b->sc1_scale), D(b->sc1_shift), C, e->bufA, 1.0f, e->sB, R * C, err));
    TIMED(e, MST_FAMILY_SYNAPSE, "qkv", synapse(e, k, -1, e->bufA, e->sB, &b->qkv, s->qkv, R, e->bufH, 1.0f, e->sH, none, err));
    TIMED(e, MST_FAMILY_ATTENTION, "window_attention", attention(e, k, b, s, err));
    TIMED(e, MST_FAMILY_IF, "attn_v_if", site(e, k, i + 5, s->av, e->bufA, R * C, NULL, NULL, C, e->bufA, 1.0f, e->sA, R * C, err));
    /* proj and fc2 end in the residual stream: folded into the synapse, with
       the IF site that reads it next (SNN) */
    mst_residual_fold res1 = {e->x, b->lam_proj, D(b->bn2_scale), D(b->bn2_shift), {0}};
    if (snn) res1.next = fold_site(e, i + 7, s->sc2, D(b->sc2_scale), D(b->sc2_shift));
    TIMED(e, MST_FAMILY_SYNAPSE, "proj", synapse(e, k, i + 6, e->bufA, e->sA, &b->proj, s->proj, R, e->bufH, 1.0f, NULL, res1, err));
    if (!snn)
        TIMED(e, MST_FAMILY_IF, "sc2", site(e, k, i + 7, s->sc2, e->x, R * C, D(b->sc2_scale), D(b->sc2_shift), C, e->bufA, 1.0f, e->sB, R * C, err));
    TIMED(e, MST_FAMILY_OTHER, "fc1_mask", mlp_mask(e, k, b, 0, err));
    TIMED(e, MST_FAMILY_SYNAPSE, "fc1", synapse(e, k, i + 8, e->bufA, e->sB, &b->fc1, s->fc1, R, e->bufH, 1.0f, e->sH, none, err));
    TIMED(e, MST_FAMILY_OTHER, "fc2_mask", mlp_mask(e, k, b, 1, err));
    mst_residual_fold res2 = {e->x, b->lam_fc2, NULL, NULL, {0}};
    if (snn && next) res2.next = fold_site(e, next->site, next_s->sc1, D(next->sc1_scale), D(next->sc1_shift));
    TIMED(e, MST_FAMILY_SYNAPSE, "fc2", synapse(e, k, i + 9, e->bufH, e->sH, &b->fc2, s->fc2, R, e->bufA, 1.0f, NULL, res2, err));
    return MST_OK;
}

static mst_status merge(mst_engine *e, const chunk *k, const mst_stage *sg, float *v, mst_error *err)
{
    int res = sg->info.resolution, C = sg->info.dim;
    long rows = (long)k->steps * k->n, R = (long)k->n * (res / 2) * (res / 2) * 2 * C;
    TRY(e->be.patch_merge(e->be.ctx, e->x, rows, res, C, e->bufA, err));
    TRY(linear(e, e->bufA, rows * (res / 2) * (res / 2), &sg->reduction, e->bufH, err));
    return site(e, k, sg->site_red, v, e->bufH, R, NULL, NULL, 2 * C, e->x, sg->lam_red, NULL, R, err);
}

/* The logits of every step of the chunk, on the device. */
static mst_status head(mst_engine *e, const chunk *k, mst_error *err)
{
    const mst_model *m = e->m;
    const mst_stage_info *last = &m->arch.stages[m->arch.num_stages - 1];
    int res = last->has_downsample ? last->resolution / 2 : last->resolution;
    long rows = (long)k->steps * k->n;
    TRY(e->be.ln_mean(e->be.ctx, e->x, rows, res * res, m->head.n_in, D(m->norm_w), D(m->norm_b), e->pooled,
                      err));
    return linear(e, e->pooled, rows, &m->head, e->logits, err);
}

/* cum[t] = cum[t-1] + logits[t], summed in step order as the reference loop does. */
static mst_status accumulate(mst_engine *e, const chunk *k, float *cum, mst_error *err)
{
    int K = e->m->arch.num_classes;
    TRY(e->be.download(e->be.ctx, e->logits_host, e->logits, sizeof(float) * (size_t)k->steps * k->n * K, err));
    for (int t = 0; t < k->steps; t++)
        for (long i = 0; i < (long)k->n * K; i++) {
            long at = (long)(k->t0 + t) * k->n * K + i;
            float prev = k->t0 + t > 0 ? cum[at - (long)k->n * K] : 0.0f;
            cum[at] = prev + e->logits_host[(long)t * k->n * K + i];
        }
    return MST_OK;
}

typedef struct {
    mst_engine *e;
    const chunk *k;
} chunk_call;

/* Every layer of one chunk: device work only (what a CUDA graph captures). */
static mst_status chunk_layers(void *arg, mst_error *err)
{
    mst_engine *e = ((chunk_call *)arg)->e;
    const chunk *k = ((chunk_call *)arg)->k;
    const mst_model *m = e->m;
    long R0 = (long)k->n * m->arch.stages[0].resolution * m->arch.stages[0].resolution * m->arch.embed_dim;
    /* direct encoding: the patch embedding is the same at every step */
    TIMED(e, MST_FAMILY_IF, "patch_embed.proj_if", site(e, k, 0, e->v_pe, e->pe_z, 0, NULL, NULL, m->arch.embed_dim, e->x, m->lam_pe, NULL, R0, err));
    for (int s = 0; s < m->arch.num_stages; s++) {
        const mst_stage *sg = &m->stages[s];
        for (int b = 0; b < sg->info.depth; b++) {
            int more = b + 1 < sg->info.depth, folded = e->o.mode == MST_MODE_SNN && b > 0;
            TRACED(e, sg->blocks[b].name, block(e, k, &sg->blocks[b], &e->bs[s][b], more ? &sg->blocks[b + 1] : NULL,
                                                more ? &e->bs[s][b + 1] : NULL, folded, err));
        }
        if (sg->info.has_downsample) TIMED(e, MST_FAMILY_OTHER, "patch_merge", merge(e, k, sg, e->v_red[s], err));
    }
    TIMED(e, MST_FAMILY_OTHER, "head", head(e, k, err));
    return MST_OK;
}

/* A chunk: its layers (replayed from a graph where the backend keeps them
 * and the engine is not being profiled), then the cumulative logits. Only
 * work that goes into a graph reads the chunk's first image and step from
 * e->keys (a replay cannot take new arguments); launched directly, the
 * attention takes them as arguments, so a profiled run never reads keys that
 * an earlier chunk left, or that nothing wrote. */
static mst_status run_chunk(mst_engine *e, const chunk *k, float *cum, mst_error *err)
{
    chunk_call call = {e, k};
    if (e->o.cuda_graphs && e->be.graph_run && !e->profiling) {
        uint64_t keys[2] = {k->first_image, (uint64_t)k->t0};
        TRY(e->be.upload(e->be.ctx, e->keys, keys, sizeof keys, err));
        e->in_graph = 1;
        mst_status r = e->be.graph_run(e->be.ctx, (long)k->steps << 20 | k->n, chunk_layers, &call, err);
        e->in_graph = 0;
        TRY(r);
    } else {
        TRY(chunk_layers(&call, err));
    }
    return accumulate(e, k, cum, err);
}

static mst_status embed(mst_engine *e, const float *images, int n, mst_error *err)
{
    const mst_arch *a = &e->m->arch;
    int res = a->stages[0].resolution;
    size_t img = (size_t)a->in_chans * a->img_size * a->img_size;
    TRY(e->be.upload(e->be.ctx, e->img, images, sizeof(float) * img * (size_t)n, err));
    TRY(e->be.patchify(e->be.ctx, e->img, n, a->in_chans, res, a->patch_size, e->patches, err));
    return linear(e, e->patches, (long)n * res * res, &e->m->pe, e->pe_z, err);
}

mst_status mst_engine_run(mst_engine *e, const float *images, int n, uint64_t first_index, float *cum,
                          mst_error *err)
{
    if (n < 1 || n > e->B) return mst_fail(err, MST_ERR_ARG, "batch of %d images; the engine takes 1 to %d", n, e->B);
    if (first_index + (uint64_t)n > ((uint64_t)1 << 32))
        return mst_fail(err, MST_ERR_ARG, "image index %llu is beyond the 2^32 the mask key holds",
                        (unsigned long long)(first_index + (uint64_t)n));
    const mst_arch *a = &e->m->arch;
    long img = (long)a->in_chans * a->img_size * a->img_size;
    for (long i = 0; i < img * n; i++)
        if (!isfinite(images[i]))
            return mst_fail(err, MST_ERR_VALUE, "image %llu has a non-finite value (%g) at element %ld",
                            (unsigned long long)(first_index + (uint64_t)(i / img)), (double)images[i], i % img);
    for (int i = 0; i < e->num_state; i++) TRY(e->be.fill(e->be.ctx, e->state[i], MST_IF_V0, e->state_n[i], err));
    TIMED(e, MST_FAMILY_OTHER, "patch_embed", embed(e, images, n, err));
    for (int t0 = 0; t0 < e->T; t0 += e->Tc) {
        chunk k = {.steps = e->T - t0 < e->Tc ? e->T - t0 : e->Tc, .t0 = t0, .n = n, .first_image = first_index};
        TRACED(e, "chunk", run_chunk(e, &k, cum, err));
    }
    e->images += (uint64_t)n;
    return MST_OK;
}
