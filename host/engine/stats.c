/* Energy accounting, spec section 6: spikes per IF site, synaptic operations
 * (spikes x fan-out) per spike-fed matmul, MACs per analog matmul, and the
 * 45 nm energy figure the SNN literature uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "engine_internal.h"

#define PJ_PER_SOP 0.9e-12
#define PJ_PER_MAC 4.6e-12
#define NAME 64

typedef struct {
    mst_engine *e;
    double steps; /* image-steps */
    int nl;
} builder;

/* Modules (mst_module_stat), in execution order. */
enum { PATCH_EMBED, QKV, QK, AV, PROJ, FC1, FC2, PATCH_MERGE, HEAD };
static const struct {
    const char *name, *group;
    int in_total;
} MODULES[MST_NUM_MODULES] = {{"patch_embed", "patch embedding", 1}, {"attn.qkv", "attention", 1},
                              {"attn.qk", "attention", 1},          {"attn.av", "attention", 1},
                              {"attn.proj", "attention", 1},        {"mlp.fc1", "MLP", 1},
                              {"mlp.fc2", "MLP", 1},                {"patch_merge", "patch merging", 1},
                              {"head", "head", 0}};

/* A matmul: `spikes_in` spikes (after RSM; `unmasked` before) times
 * `fanout` SOPs, or `macs` for an analog one; counted into its module. */
static void layer(builder *b, int module, const char *name, double unmasked, double spikes_in, double fanout,
                  double macs)
{
    mst_layer_stat *l = &b->e->layer_stats[b->nl];
    mst_module_stat *m = &b->e->module_stats[module];
    char *n = b->e->names + (size_t)b->nl++ * NAME;
    snprintf(n, NAME, "%s", name);
    *l = (mst_layer_stat){.name = n, .spikes_in = spikes_in, .spikes_unmasked = unmasked, .sops = spikes_in * fanout,
                          .macs = macs};
    m->sops += l->sops;
    m->macs += macs;
    m->sops_dropped += (unmasked - spikes_in) * fanout;
}

static void site(builder *b, int i, double spikes, double neurons_per_step)
{
    b->e->site_stats[i] = (mst_site_stat){.name = mst_model_site_name(b->e->m, i), .spikes = spikes,
                                          .neurons = neurons_per_step * b->steps};
}

static void block_stats(builder *bl, const mst_block *b, const char *p)
{
    const uint64_t *sp = bl->e->spikes, *at = bl->e->attn_counts + (long)b->index * MST_BLOCK_COUNTS;
    unsigned sites = bl->e->o.mask_sites;
    int masking = bl->e->o.mask_ratio > 0;
    double N = (double)b->res * b->res, C = b->dim, n = (double)b->window * b->window, H = b->mlp_hidden;
    char name[NAME];
    int i = b->site;
    double per_site[10] = {N * C, N * C, N * C, N * C, N * b->heads * n, N * C, N * C, N * C, N * H, N * C};
    double fired[10] = {(double)sp[i], (double)at[MST_ATTN_Q], (double)at[MST_ATTN_K], (double)at[MST_ATTN_V],
                        (double)at[MST_ATTN_S], (double)sp[i + 5], (double)sp[i + 6], (double)sp[i + 7],
                        (double)sp[i + 8], (double)sp[i + 9]};
    double fc1_in = masking && sites & MST_MASK_FC1 ? (double)at[MST_FC1_KEPT] : fired[7];
    double fc2_in = masking && sites & MST_MASK_FC2 ? (double)at[MST_FC2_KEPT] : fired[8];
    for (int s = 0; s < 10; s++) site(bl, i + s, fired[s], per_site[s]);
    snprintf(name, NAME, "%.40s.attn.qkv", p), layer(bl, QKV, name, fired[0], fired[0], 3 * C, 0);
    snprintf(name, NAME, "%.40s.attn.qk", p), layer(bl, QK, name, fired[1], (double)at[MST_ATTN_Q_KEPT], n, 0);
    snprintf(name, NAME, "%.40s.attn.av", p), layer(bl, AV, name, fired[3], fired[3], n, 0);
    snprintf(name, NAME, "%.40s.attn.proj", p), layer(bl, PROJ, name, fired[5], fired[5], C, 0);
    snprintf(name, NAME, "%.40s.mlp.fc1", p), layer(bl, FC1, name, fired[7], fc1_in, H, 0);
    snprintf(name, NAME, "%.40s.mlp.fc2", p), layer(bl, FC2, name, fired[8], fc2_in, C, 0);
}

static int num_layers(const mst_arch *a)
{
    int n = 1;
    for (int s = 0; s < a->num_stages; s++) n += 6 * a->stages[s].depth + a->stages[s].has_downsample;
    return n;
}

static void totals(mst_engine *e, builder *b, mst_stats *out)
{
    const mst_arch *a = &e->m->arch;
    const mst_stage_info *last = &a->stages[a->num_stages - 1];
    double Nl = (double)last->resolution * last->resolution / (last->has_downsample ? 4 : 1);
    *out = (mst_stats){.images = (double)e->images, .steps = e->T, .num_layers = b->nl, .num_sites = a->num_if_sites,
                       .layers = e->layer_stats, .sites = e->site_stats};
    for (int i = 0; i < b->nl; i++) {
        out->sops += e->layer_stats[i].sops;
        out->macs += e->layer_stats[i].macs;
    }
    out->energy_j = PJ_PER_SOP * out->sops + PJ_PER_MAC * out->macs;
    out->head_macs = b->steps * (double)e->m->head.n_in * a->num_classes;
    e->module_stats[HEAD].macs = out->head_macs;
    for (int i = 0; i < MST_NUM_MODULES; i++) {
        mst_module_stat *m = &e->module_stats[i];
        m->name = MODULES[i].name, m->group = MODULES[i].group, m->in_total = MODULES[i].in_total;
        m->energy_j = PJ_PER_SOP * m->sops + PJ_PER_MAC * m->macs;
    }
    out->num_modules = MST_NUM_MODULES;
    out->modules = e->module_stats;
    out->norm_elems = b->steps * Nl * e->m->head.n_in;
    for (int s = 0; s < a->num_stages; s++) {
        double n = (double)a->stages[s].window * a->stages[s].window;
        double N = (double)a->stages[s].resolution * a->stages[s].resolution;
        out->softmax_exps += b->steps * a->stages[s].depth * N * a->stages[s].heads * n;
    }
}

mst_status mst_engine_stats(mst_engine *e, mst_stats *out, mst_error *err)
{
    if (e->o.mode != MST_MODE_SNN) return mst_fail(err, MST_ERR_ARG, "energy accounting is for SNN mode");
    if (!e->o.count_spikes)
        return mst_fail(err, MST_ERR_ARG, "energy accounting needs an engine that counts spikes (count_spikes)");
    TRY(e->be.download(e->be.ctx, e->spikes, e->dev_counts, sizeof(uint64_t) * e->num_counts, err));
    const mst_arch *a = &e->m->arch;
    int nl = num_layers(a);
    free(e->layer_stats), free(e->site_stats), free(e->names);
    e->layer_stats = calloc((size_t)nl, sizeof(mst_layer_stat));
    e->site_stats = calloc((size_t)a->num_if_sites, sizeof(mst_site_stat));
    e->names = calloc((size_t)nl, NAME);
    if (!e->layer_stats || !e->site_stats || !e->names) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    builder b = {.e = e, .steps = (double)e->images * e->T};
    memset(e->module_stats, 0, sizeof e->module_stats);
    double N0 = (double)a->stages[0].resolution * a->stages[0].resolution;
    /* the reference loop runs the patch embedding at every step, so it is counted at every step */
    layer(&b, PATCH_EMBED, "patch_embed.proj", 0, 0, 0, b.steps * N0 * a->embed_dim * e->m->pe.n_in);
    site(&b, 0, (double)e->spikes[0], N0 * a->embed_dim);
    for (int s = 0; s < a->num_stages; s++) {
        const mst_stage *sg = &e->m->stages[s];
        double N = (double)sg->info.resolution * sg->info.resolution, C = sg->info.dim;
        char p[NAME];
        for (int k = 0; k < sg->info.depth; k++) {
            snprintf(p, NAME, "layers.%d.blocks.%d", s, k);
            block_stats(&b, &sg->blocks[k], p);
        }
        if (!sg->info.has_downsample) continue;
        snprintf(p, NAME, "layers.%d.downsample.reduction", s);
        layer(&b, PATCH_MERGE, p, 0, 0, 0, b.steps * (N / 4) * (4 * C) * (2 * C));
        site(&b, sg->site_red, (double)e->spikes[sg->site_red], N / 4 * 2 * C);
    }
    totals(e, &b, out);
    return MST_OK;
}

mst_status mst_engine_reset_stats(mst_engine *e, mst_error *err)
{
    memset(e->spikes, 0, sizeof(uint64_t) * e->num_counts);
    e->images = 0;
    return e->be.upload(e->be.ctx, e->dev_counts, e->spikes, sizeof(uint64_t) * e->num_counts, err);
}

size_t mst_engine_num_counts(const mst_engine *e) { return e->o.count_spikes ? e->num_counts : 0; }

mst_status mst_engine_get_counts(mst_engine *e, uint64_t *counts, uint64_t *images, mst_error *err)
{
    if (!e->o.count_spikes) return mst_fail(err, MST_ERR_ARG, "this engine does not count spikes (count_spikes)");
    TRY(e->be.download(e->be.ctx, e->spikes, e->dev_counts, sizeof(uint64_t) * e->num_counts, err));
    memcpy(counts, e->spikes, sizeof(uint64_t) * e->num_counts);
    *images = e->images;
    return MST_OK;
}

mst_status mst_engine_set_counts(mst_engine *e, const uint64_t *counts, uint64_t images, mst_error *err)
{
    if (!e->o.count_spikes) return mst_fail(err, MST_ERR_ARG, "this engine does not count spikes (count_spikes)");
    memcpy(e->spikes, counts, sizeof(uint64_t) * e->num_counts);
    e->images = images;
    return e->be.upload(e->be.ctx, e->dev_counts, e->spikes, sizeof(uint64_t) * e->num_counts, err);
}
