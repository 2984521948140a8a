/* Checkpoint -> typed model: reads every tensor the spec names, validates it,
 * and folds BatchNorms and thresholds (see model.h for the convention). */
#include "model.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "arch.h"
#include "checkpoint.h"
#include "../../kernels/backend.h"
#include "../../kernels/common/mst_window.h"

#define BN_EPS 1e-5f

typedef struct {
    mst_safetensors *st;
    mst_model *m;
    mst_error *err;
    int site;
} loader;

static mst_status readf(loader *L, float **out, int ndim, const int64_t *shape, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return mst_st_read_f32(L->st, name, ndim, shape, out, L->err);
}

static mst_status nomem(loader *L);

static float *zeros(int n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* An IF site's threshold: `<prefix>.up`, one positive finite element. */
static mst_status lambda(loader *L, const char *prefix, float *out)
{
    char name[256];
    snprintf(name, sizeof name, "%.250s.up", prefix);
    const mst_st_tensor *t = mst_st_find(L->st, name);
    if (t && mst_st_numel(t) != 1)
        return mst_fail(L->err, MST_ERR_SHAPE, "%s: threshold \"%s\" has %lld elements, expected 1",
                        L->st->path, name, (long long)mst_st_numel(t));
    float *v;
    mst_status r = mst_st_read_f32(L->st, name, -1, NULL, &v, L->err);
    if (r != MST_OK) return r;
    *out = v[0];
    free(v);
    if (!(*out > 0.0f))
        return mst_fail(L->err, MST_ERR_VALUE, "%s: threshold \"%s\" is %g; it must be > 0", L->st->path,
                        name, (double)*out);
    if (!(L->m->site_names[L->site] = strdup(prefix))) return nomem(L);
    L->m->site_lams[L->site++] = *out;
    return MST_OK;
}

/* Eval-mode BatchNorm as a per-channel affine: u * scale + shift. */
static mst_status batchnorm(loader *L, const char *prefix, int c, float **scale, float **shift)
{
    int64_t shp[1] = {c};
    float *w = NULL, *b = NULL, *mean = NULL, *var = NULL;
    mst_status r = readf(L, &w, 1, shp, "%s.weight", prefix);
    if (r == MST_OK) r = readf(L, &b, 1, shp, "%s.bias", prefix);
    if (r == MST_OK) r = readf(L, &mean, 1, shp, "%s.running_mean", prefix);
    if (r == MST_OK) r = readf(L, &var, 1, shp, "%s.running_var", prefix);
    for (int i = 0; r == MST_OK && i < c; i++)
        if (var[i] < 0.0f)
            r = mst_fail(L->err, MST_ERR_VALUE, "%s: %s.running_var[%d] = %g is negative", L->st->path,
                         prefix, i, (double)var[i]);
    if (r == MST_OK) {
        for (int i = 0; i < c; i++) {
            float a = w[i] / sqrtf(var[i] + BN_EPS);
            b[i] = b[i] - mean[i] * a;
            w[i] = a;
        }
        *scale = w;
        *shift = b;
    } else {
        free(w);
        free(b);
    }
    free(mean);
    free(var);
    return r;
}

static mst_status dense(loader *L, mst_dense *d, int n_out, int n_in, int bias, const char *prefix)
{
    int64_t ws[2] = {n_out, n_in}, bs[1] = {n_out};
    d->n_out = n_out;
    d->n_in = n_in;
    mst_status r = readf(L, &d->w, 2, ws, "%s.weight", prefix);
    if (r != MST_OK) return r;
    if (bias) return readf(L, &d->b, 1, bs, "%s.bias", prefix);
    d->b = zeros(n_out);
    return d->b ? MST_OK : mst_fail(L->err, MST_ERR_NOMEM, "out of memory");
}

/* Rows [r0, r1) of y = x W^T + b become ((x * in_scale) W^T + b) * bn_scale + bn_shift,
 * divided by the consuming IF site's threshold. bn_* may be NULL (no BatchNorm). */
static void fold(mst_dense *d, int r0, int r1, float in_scale, const float *bn_scale,
                 const float *bn_shift, float lam)
{
    for (int n = r0; n < r1; n++) {
        float a = bn_scale ? bn_scale[n] : 1.0f;
        float f = in_scale * a / lam;
        for (int k = 0; k < d->n_in; k++) d->w[(size_t)n * d->n_in + k] *= f;
        d->b[n] = (d->b[n] * a + (bn_shift ? bn_shift[n] : 0.0f)) / lam;
    }
}

static mst_status nomem(loader *L) { return mst_fail(L->err, MST_ERR_NOMEM, "out of memory"); }


/* B_rel expanded to [heads][w*w][w*w] so kernels index it directly. */
static mst_status rel_bias(loader *L, mst_block *bk, const char *p)
{
    int w = bk->window, n = w * w, side = 2 * w - 1;
    int64_t shp[2] = {(int64_t)side * side, bk->heads};
    float *table;
    mst_status r = readf(L, &table, 2, shp, "%s.attn.relative_position_bias_table", p);
    if (r != MST_OK) return r;
    bk->rel_bias = malloc(sizeof(float) * (size_t)bk->heads * n * n);
    if (!bk->rel_bias) {
        free(table);
        return nomem(L);
    }
    for (int h = 0; h < bk->heads; h++)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                bk->rel_bias[((size_t)h * n + i) * n + j] = table[mst_rel_index(i, j, w) * bk->heads + h];
    free(table);
    return MST_OK;
}

static mst_status site(loader *L, const char *p, const char *name, float *lam)
{
    char full[256];
    snprintf(full, sizeof full, "%.120s.%.120s", p, name);
    return lambda(L, full, lam);
}

static mst_status attention(loader *L, mst_block *bk, const char *p, float lam_sc1)
{
    int C = bk->dim;
    float lq, lk, lv, lav;
    char pre[256];
    snprintf(pre, sizeof pre, "%s.attn.qkv", p);
    mst_status r = site(L, p, "attn.q_if", &lq);
    if (r == MST_OK) r = site(L, p, "attn.k_if", &lk);
    if (r == MST_OK) r = site(L, p, "attn.v_if", &lv);
    if (r == MST_OK) r = dense(L, &bk->qkv, 3 * C, C, 1, pre);
    if (r != MST_OK) return r;
    fold(&bk->qkv, 0, C, lam_sc1, NULL, NULL, lq);
    fold(&bk->qkv, C, 2 * C, lam_sc1, NULL, NULL, lk);
    fold(&bk->qkv, 2 * C, 3 * C, lam_sc1, NULL, NULL, lv);
    r = site(L, p, "attn.attn_if", &bk->lam_attn);
    if (r == MST_OK && bk->lam_attn >= MST_MAX_ATTN_THRESHOLD)
        r = mst_fail(L->err, MST_ERR_UNSUPPORTED, "%s: threshold \"%s.attn.attn_if.up\" is %g; mst supports < %g",
                     L->st->path, p, (double)bk->lam_attn, (double)MST_MAX_ATTN_THRESHOLD);
    if (r == MST_OK) r = site(L, p, "attn.attn_v_if", &lav);
    if (r == MST_OK) r = rel_bias(L, bk, p);
    snprintf(pre, sizeof pre, "%s.attn.proj", p);
    if (r == MST_OK) r = dense(L, &bk->proj, C, C, 1, pre);
    if (r == MST_OK) r = site(L, p, "attn.proj_if", &bk->lam_proj);
    if (r != MST_OK) return r;
    bk->qk_scale = lq * lk / sqrtf((float)(C / bk->heads)) / bk->lam_attn;
    bk->v_scale = lv / lav;
    fold(&bk->proj, 0, C, lav, NULL, NULL, bk->lam_proj);
    return MST_OK;
}

/* fc -> optional MLP BatchNorm -> IF: all folded into the fc. */
static mst_status mlp_layer(loader *L, mst_dense *d, const char *p, int idx, int n_out, int n_in,
                            float lam_in, float *lam_out)
{
    char pre[256];
    float *bs = NULL, *bb = NULL;
    snprintf(pre, sizeof pre, "%s.mlp.fc%d", p, idx);
    mst_status r = dense(L, d, n_out, n_in, 1, pre);
    snprintf(pre, sizeof pre, "%s.mlp.norm%d", p, idx);
    if (r == MST_OK && L->m->arch.mlp_bn) r = batchnorm(L, pre, n_out, &bs, &bb);
    snprintf(pre, sizeof pre, "mlp.fc%d_if", idx);
    if (r == MST_OK) r = site(L, p, pre, lam_out);
    if (r == MST_OK) fold(d, 0, n_out, lam_in, bs, bb, *lam_out);
    free(bs);
    free(bb);
    return r;
}

static mst_status block(loader *L, const mst_stage_info *si, int s, int b, mst_block *bk)
{
    char p[128], pre[192];
    snprintf(p, sizeof p, "layers.%d.blocks.%d", s, b);
    bk->dim = si->dim;
    bk->heads = si->heads;
    bk->window = si->window;
    bk->res = si->resolution;
    bk->mlp_hidden = si->mlp_hidden;
    bk->shift = (b % 2 == 1 && si->resolution > si->window) ? si->window / 2 : 0;
    bk->site = L->site;
    float lam_sc1, lam_sc2, lam_fc1;
    snprintf(pre, sizeof pre, "%s.norm1", p);
    mst_status r = batchnorm(L, pre, bk->dim, &bk->sc1_scale, &bk->sc1_shift);
    if (r == MST_OK) r = site(L, p, "shortcut1_if", &lam_sc1);
    if (r != MST_OK) return r;
    for (int c = 0; c < bk->dim; c++) {
        bk->sc1_scale[c] /= lam_sc1;
        bk->sc1_shift[c] /= lam_sc1;
    }
    r = attention(L, bk, p, lam_sc1);
    snprintf(pre, sizeof pre, "%s.norm2", p);
    if (r == MST_OK) r = batchnorm(L, pre, bk->dim, &bk->bn2_scale, &bk->bn2_shift);
    if (r == MST_OK) r = site(L, p, "shortcut2_if", &lam_sc2);
    if (r != MST_OK) return r;
    bk->sc2_scale = malloc(sizeof(float) * (size_t)bk->dim);
    bk->sc2_shift = zeros(bk->dim);
    if (!bk->sc2_scale || !bk->sc2_shift) return nomem(L);
    for (int c = 0; c < bk->dim; c++) bk->sc2_scale[c] = 1.0f / lam_sc2;
    r = mlp_layer(L, &bk->fc1, p, 1, bk->mlp_hidden, bk->dim, lam_sc2, &lam_fc1);
    if (r == MST_OK) r = mlp_layer(L, &bk->fc2, p, 2, bk->dim, bk->mlp_hidden, lam_fc1, &bk->lam_fc2);
    return r;
}

/* Patch merging: BN over the 4C concatenation folds into the bias-free reduction. */
static mst_status downsample(loader *L, int s, mst_stage *sg)
{
    int C = sg->info.dim;
    char pre[128];
    float *bs, *bb;
    snprintf(pre, sizeof pre, "layers.%d.downsample.norm", s);
    mst_status r = batchnorm(L, pre, 4 * C, &bs, &bb);
    if (r != MST_OK) return r;
    snprintf(pre, sizeof pre, "layers.%d.downsample.reduction", s);
    r = dense(L, &sg->reduction, 2 * C, 4 * C, 0, pre);
    snprintf(pre, sizeof pre, "layers.%d.downsample.reduction_if", s);
    sg->site_red = L->site;
    if (r == MST_OK) r = lambda(L, pre, &sg->lam_red);
    for (int n = 0; r == MST_OK && n < 2 * C; n++) {
        float *w = sg->reduction.w + (size_t)n * 4 * C, acc = 0.0f;
        for (int k = 0; k < 4 * C; k++) {
            acc += w[k] * bb[k];
            w[k] *= bs[k] / sg->lam_red;
        }
        sg->reduction.b[n] = acc / sg->lam_red;
    }
    free(bs);
    free(bb);
    return r;
}

static mst_status patch_embed(loader *L)
{
    mst_model *m = L->m;
    const mst_arch *a = &m->arch;
    int C = a->embed_dim, K = a->in_chans * a->patch_size * a->patch_size;
    int64_t shp[4] = {C, a->in_chans, a->patch_size, a->patch_size}, bshp[1] = {C};
    float *bs, *bb;
    m->pe.n_out = C;
    m->pe.n_in = K;
    mst_status r = readf(L, &m->pe.w, 4, shp, "patch_embed.proj.weight");
    if (r != MST_OK) return r;
    if (mst_st_find(L->st, "patch_embed.proj.bias"))
        r = readf(L, &m->pe.b, 1, bshp, "patch_embed.proj.bias");
    else if (!(m->pe.b = zeros(C)))
        r = nomem(L);
    if (r == MST_OK) r = batchnorm(L, "patch_embed.norm", C, &bs, &bb);
    if (r != MST_OK) return r;
    r = lambda(L, "patch_embed.proj_if", &m->lam_pe);
    if (r == MST_OK) fold(&m->pe, 0, C, 1.0f, bs, bb, m->lam_pe);
    free(bs);
    free(bb);
    return r;
}

static mst_status stages(loader *L)
{
    mst_model *m = L->m;
    m->stages = calloc((size_t)m->arch.num_stages, sizeof(mst_stage));
    if (!m->stages) return nomem(L);
    int g = 0, blocks = m->arch.num_mask_sites / 5;
    for (int s = 0; s < m->arch.num_stages; s++) {
        mst_stage *sg = &m->stages[s];
        sg->info = m->infos[s];
        sg->blocks = calloc((size_t)sg->info.depth, sizeof(mst_block));
        if (!sg->blocks) return nomem(L);
        for (int b = 0; b < sg->info.depth; b++, g++) {
            sg->blocks[b].mask_site = 3 * g;
            sg->blocks[b].mlp_mask_site = 3 * blocks + 2 * g; /* spec section 4b */
            sg->blocks[b].index = g;
            snprintf(sg->blocks[b].name, sizeof sg->blocks[b].name, "layers.%d.blocks.%d", s, b);
            mst_status r = block(L, &sg->info, s, b, &sg->blocks[b]);
            if (r != MST_OK) return r;
        }
        if (sg->info.has_downsample) {
            mst_status r = downsample(L, s, sg);
            if (r != MST_OK) return r;
        }
    }
    return MST_OK;
}

static mst_status head(loader *L)
{
    mst_model *m = L->m;
    const mst_arch *a = &m->arch;
    int C = a->stages[a->num_stages - 1].dim;
    if (a->stages[a->num_stages - 1].has_downsample) C *= 2;
    int64_t shp[1] = {C};
    mst_status r = readf(L, &m->norm_w, 1, shp, "norm.weight");
    if (r == MST_OK) r = readf(L, &m->norm_b, 1, shp, "norm.bias");
    return r == MST_OK ? dense(L, &m->head, a->num_classes, C, 1, "head") : r;
}

/* A list stored as a JSON string in __metadata__ (mean, std, class_names). */
static json_t *meta_list(loader *L, const char *key)
{
    const char *v = mst_st_meta(L->st, key);
    json_t *j = v ? json_loads(v, 0, NULL) : NULL;
    if (j && !json_is_array(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static mst_status meta_floats(loader *L, const char *key, float **out)
{
    json_t *j = meta_list(L, key);
    int n = L->m->arch.in_chans;
    mst_status r = MST_OK;
    if (!j) return MST_OK;
    if ((int)json_array_size(j) != n)
        r = mst_fail(L->err, MST_ERR_FORMAT, "%s: __metadata__ %s has %zu entries for %d input channels",
                     L->st->path, key, json_array_size(j), n);
    else if (!(*out = malloc(sizeof(float) * (size_t)n)))
        r = nomem(L);
    for (int i = 0; r == MST_OK && i < n; i++) (*out)[i] = (float)json_number_value(json_array_get(j, (size_t)i));
    json_decref(j);
    return r;
}

static mst_status metadata(loader *L)
{
    mst_model *m = L->m;
    const char *ds = mst_st_meta(L->st, "dataset");
    m->dataset = strdup(ds ? ds : "");
    m->arch.dataset = m->dataset;
    mst_status r = meta_floats(L, "mean", &m->mean);
    if (r == MST_OK) r = meta_floats(L, "std", &m->std);
    m->arch.mean = m->mean;
    m->arch.std = m->std;
    const char *ip = mst_st_meta(L->st, "interpolation"), *cp = mst_st_meta(L->st, "crop_pct");
    if (r == MST_OK && ip && strcmp(ip, "bilinear") && strcmp(ip, "bicubic"))
        r = mst_fail(L->err, MST_ERR_FORMAT, "%s: __metadata__ interpolation \"%s\" is not bilinear or bicubic",
                     L->st->path, ip);
    m->interpolation = strdup(ip ? ip : "");
    m->arch.interpolation = m->interpolation;
    if (r == MST_OK && cp) {
        char *end;
        m->arch.crop_pct = strtod(cp, &end);
        if (end == cp || *end || !(m->arch.crop_pct >= 0.05 && m->arch.crop_pct <= 1.0))
            r = mst_fail(L->err, MST_ERR_FORMAT, "%s: __metadata__ crop_pct \"%s\" is not a number in [0.05, 1]",
                         L->st->path, cp);
    }
    json_t *names = meta_list(L, "class_names");
    if (names && (int)json_array_size(names) == m->arch.num_classes) {
        m->class_names = calloc((size_t)m->arch.num_classes, sizeof(char *));
        for (int i = 0; m->class_names && i < m->arch.num_classes; i++) {
            const char *s = json_string_value(json_array_get(names, (size_t)i));
            m->class_names[i] = strdup(s ? s : "");
        }
        m->num_class_names = m->class_names ? m->arch.num_classes : 0;
    }
    json_decref(names);
    const char *ms = mst_st_meta(L->st, "mask_sites");
    mst_error why;
    m->arch.mask_sites = MST_MASK_RELEASED;
    if (r == MST_OK && ms && mst_mask_sites_parse(ms, &m->arch.mask_sites, &why) != MST_OK)
        r = mst_fail(L->err, MST_ERR_FORMAT, "%s: __metadata__ mask_sites: %s", L->st->path, why.msg);
    return r;
}

static int is_buffer(const char *name)
{
    static const char *suffix[] = {"running_mean", "running_var", "num_batches_tracked", "attn_mask",
                                   "relative_position_index"};
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        size_t n = strlen(name), k = strlen(suffix[i]);
        if (n >= k && strcmp(name + n - k, suffix[i]) == 0) return 1;
    }
    return 0;
}

/* Everything in the checkpoint must have been used: a tensor left over means
 * the inferred architecture is not the one the file describes. */
static mst_status check_all_used(loader *L)
{
    for (int i = 0; i < L->st->num_tensors; i++)
        if (!L->st->used[i] && !is_buffer(L->st->tensors[i].name))
            return mst_fail(L->err, MST_ERR_FORMAT,
                            "%s: unexpected tensor \"%s\": not part of the architecture inferred from the others",
                            L->st->path, L->st->tensors[i].name);
    return MST_OK;
}

static void count_params(loader *L)
{
    int64_t n = 0;
    for (int i = 0; i < L->st->num_tensors; i++)
        if (!is_buffer(L->st->tensors[i].name)) n += mst_st_numel(&L->st->tensors[i]);
    L->m->arch.num_params = n;
}

static mst_status alloc_sites(loader *L)
{
    mst_arch *a = &L->m->arch;
    int blocks = 0, merges = 0;
    for (int s = 0; s < a->num_stages; s++) {
        blocks += a->stages[s].depth;
        merges += a->stages[s].has_downsample;
    }
    a->num_if_sites = 1 + 10 * blocks + merges;
    a->num_mask_sites = 5 * blocks;
    L->m->site_names = calloc((size_t)a->num_if_sites, sizeof(char *));
    L->m->site_lams = calloc((size_t)a->num_if_sites, sizeof(float));
    return L->m->site_names && L->m->site_lams ? MST_OK : nomem(L);
}

/* Checkpoints store [out][in]; kernels want [in][out], rows 64-byte aligned
 * at the start so vector loads of a weight row do not straddle cache lines. */
static mst_status input_major(loader *L, mst_dense *d)
{
    size_t bytes = sizeof(float) * (size_t)d->n_in * (size_t)d->n_out;
    float *t = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!t) return nomem(L);
    enum { TILE = 32 }; /* tiles, so that neither side strides through memory a float at a time */
    for (int n0 = 0; n0 < d->n_out; n0 += TILE)
        for (int k0 = 0; k0 < d->n_in; k0 += TILE)
            for (int n = n0; n < n0 + TILE && n < d->n_out; n++)
                for (int k = k0; k < k0 + TILE && k < d->n_in; k++) t[(size_t)k * d->n_out + n] = d->w[(size_t)n * d->n_in + k];
    free(d->w);
    d->w = t;
    return MST_OK;
}

static mst_status transpose_all(loader *L)
{
    mst_model *m = L->m;
    mst_status r = input_major(L, &m->pe);
    if (r == MST_OK) r = input_major(L, &m->head);
    for (int s = 0; r == MST_OK && s < m->arch.num_stages; s++) {
        mst_stage *sg = &m->stages[s];
        for (int b = 0; r == MST_OK && b < sg->info.depth; b++) {
            mst_dense *d[4] = {&sg->blocks[b].qkv, &sg->blocks[b].proj, &sg->blocks[b].fc1, &sg->blocks[b].fc2};
            for (int i = 0; r == MST_OK && i < 4; i++) r = input_major(L, d[i]);
        }
        if (r == MST_OK && sg->info.has_downsample) r = input_major(L, &sg->reduction);
    }
    return r;
}

static mst_status load(loader *L, const mst_load_opts *opts)
{
    mst_model *m = L->m;
    mst_status r = mst_infer_arch(L->st, opts ? opts->img_size : 0, &m->arch, &m->infos, L->err);
    if (r == MST_OK) r = alloc_sites(L);
    if (r == MST_OK) r = patch_embed(L);
    if (r == MST_OK) r = stages(L);
    if (r == MST_OK) r = head(L);
    if (r == MST_OK) r = transpose_all(L);
    if (r == MST_OK) r = check_all_used(L);
    if (r == MST_OK) r = metadata(L);
    if (r == MST_OK) count_params(L);
    return r;
}

mst_status mst_model_from_table(mst_safetensors *st, const mst_load_opts *opts, mst_model **out, mst_error *err)
{
    *out = NULL;
    loader L = {.st = st, .err = err};
    L.m = calloc(1, sizeof(mst_model));
    if (!L.m) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    mst_status r = load(&L, opts);
    if (r != MST_OK) {
        mst_model_free(L.m);
        return r;
    }
    *out = L.m;
    return MST_OK;
}

mst_status mst_model_load(const char *path, const mst_load_opts *opts, mst_model **out, mst_error *err)
{
    mst_safetensors st;
    *out = NULL;
    mst_status r = mst_checkpoint_open(path, opts, &st, err);
    if (r == MST_OK) r = mst_model_from_table(&st, opts, out, err);
    mst_st_close(&st);
    return r;
}

static void free_dense(mst_dense *d)
{
    free(d->w);
    free(d->b);
}

static void free_block(mst_block *b)
{
    float *arrays[] = {b->sc1_scale, b->sc1_shift, b->rel_bias, b->bn2_scale,
                       b->bn2_shift, b->sc2_scale, b->sc2_shift};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) free(arrays[i]);
    free_dense(&b->qkv);
    free_dense(&b->proj);
    free_dense(&b->fc1);
    free_dense(&b->fc2);
}

void mst_model_free(mst_model *m)
{
    if (!m) return;
    for (int s = 0; m->stages && s < m->arch.num_stages; s++) {
        for (int b = 0; m->stages[s].blocks && b < m->stages[s].info.depth; b++)
            free_block(&m->stages[s].blocks[b]);
        free(m->stages[s].blocks);
        free_dense(&m->stages[s].reduction);
    }
    for (int i = 0; m->site_names && i < m->arch.num_if_sites; i++) free(m->site_names[i]);
    for (int i = 0; i < m->num_class_names; i++) free(m->class_names[i]);
    free(m->interpolation);
    free(m->class_names);
    free(m->site_names);
    free(m->site_lams);
    free(m->stages);
    free(m->infos);
    free_dense(&m->pe);
    free_dense(&m->head);
    free(m->norm_w);
    free(m->norm_b);
    free(m->dataset);
    free(m->mean);
    free(m->std);
    free(m);
}

const mst_arch *mst_model_arch(const mst_model *m) { return &m->arch; }

const char *mst_model_class_name(const mst_model *m, int i)
{
    return i >= 0 && i < m->num_class_names ? m->class_names[i] : NULL;
}

const char *mst_model_site_name(const mst_model *m, int i)
{
    return i >= 0 && i < m->arch.num_if_sites ? m->site_names[i] : NULL;
}

float mst_model_site_threshold(const mst_model *m, int i)
{
    return i >= 0 && i < m->arch.num_if_sites ? m->site_lams[i] : 0.0f;
}

void mst_model_macs(const mst_model *m, double *per_step, double *once)
{
    const mst_arch *a = &m->arch;
    double N0 = (double)a->stages[0].resolution * a->stages[0].resolution;
    *once = N0 * a->in_chans * a->patch_size * a->patch_size * a->embed_dim;
    double per = 0;
    for (int s = 0; s < a->num_stages; s++) {
        const mst_stage_info *st = &a->stages[s];
        double tokens = (double)st->resolution * st->resolution, C = st->dim, H = st->mlp_hidden;
        double n = (double)st->window * st->window; /* keys per query */
        /* qkv, q.k^T and softmax.v (tokens x n x C each, over all heads), proj, fc1, fc2 */
        per += st->depth * tokens * (3 * C * C + 2 * n * C + C * C + 2 * C * H);
        if (st->has_downsample) per += tokens / 4 * (4 * C) * (2 * C);
    }
    *per_step = per + (double)m->head.n_in * a->num_classes;
}

double mst_model_bytes(const mst_model *m)
{
    const mst_arch *a = &m->arch;
    double bytes = 0;
    for (int s = 0; s < a->num_stages; s++) {
        const mst_stage_info *st = &a->stages[s];
        double t = (double)st->resolution * st->resolution, C = st->dim, H = st->mlp_hidden, bits = 1.0 / 8, f = 4;
        double block = (f * C + C * bits)          /* IF_sc1: x in, spikes out */
                       + (C * bits + 3 * C * bits) /* qkv synapse + its IF sites */
                       + (3 * C * bits + f * C)    /* window attention: spikes in, IF_av input out */
                       + (f * C + C * bits)        /* IF_av */
                       + (C * bits + f * C)        /* proj synapse, into the residual */
                       + 3 * f * C                 /* residual add with BN2 */
                       + (f * C + C * bits)        /* IF_sc2 */
                       + (C * bits + H * bits)     /* fc1 synapse */
                       + (H * bits + f * C)        /* fc2 synapse */
                       + 3 * f * C;                /* residual add */
        bytes += st->depth * t * block;
        if (st->has_downsample) /* gather, reduction GEMM, IF_red into the next stage's x */
            bytes += t * f * C + t * f * C + t / 4 * (f * 4 * C + f * 2 * C) + t / 4 * (f * 2 * C + f * 2 * C);
    }
    const mst_stage_info *last = &a->stages[a->num_stages - 1];
    double tl = (double)last->resolution * last->resolution / (last->has_downsample ? 4 : 1);
    return bytes + tl * 4.0 * m->head.n_in + 4.0 * a->num_classes; /* LayerNorm + mean, head */
}
