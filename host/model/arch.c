/* Architecture inference: everything from tensor names and shapes, nothing
 * hard-coded to Swin-T. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "arch.h"

static const mst_st_tensor *find(const mst_safetensors *st, const char *fmt, int a, int b)
{
    char name[256];
    snprintf(name, sizeof name, fmt, a, b);
    return mst_st_find(st, name);
}

static mst_status need(const mst_safetensors *st, const mst_st_tensor *t, const char *what,
                       int ndim, mst_error *err)
{
    if (!t) return mst_fail(err, MST_ERR_MISSING, "%s: missing tensor %s", st->path, what);
    if (t->ndim != ndim)
        return mst_fail(err, MST_ERR_SHAPE, "%s: tensor \"%s\" has rank %d, expected %d", st->path,
                        t->name, t->ndim, ndim);
    return MST_OK;
}

static int count_stages(const mst_safetensors *st)
{
    int s = 0;
    while (find(st, "layers.%d.blocks.%d.attn.qkv.weight", s, 0)) s++;
    return s;
}

static int count_blocks(const mst_safetensors *st, int s)
{
    int b = 0;
    while (find(st, "layers.%d.blocks.%d.attn.qkv.weight", s, b)) b++;
    return b;
}

/* heads and window from one block's relative_position_bias_table [(2w-1)^2, heads] */
static mst_status block_geometry(const mst_safetensors *st, int s, int b, int *heads, int *window,
                                 mst_error *err)
{
    const mst_st_tensor *t = find(st, "layers.%d.blocks.%d.attn.relative_position_bias_table", s, b);
    char what[128];
    snprintf(what, sizeof what, "layers.%d.blocks.%d.attn.relative_position_bias_table", s, b);
    mst_status r = need(st, t, what, 2, err);
    if (r != MST_OK) return r;
    int side = (int)lround(sqrt((double)t->shape[0]));
    if (side * side != t->shape[0] || side % 2 == 0 || t->shape[1] < 1)
        return mst_fail(err, MST_ERR_SHAPE, "%s: %s has %lld rows, not (2w-1)^2 for a window w", st->path,
                        what, (long long)t->shape[0]);
    *heads = (int)t->shape[1];
    *window = (side + 1) / 2;
    return MST_OK;
}

static mst_status stage_shape(const mst_safetensors *st, int s, mst_stage_info *si, mst_error *err)
{
    si->depth = count_blocks(st, s);
    for (int b = 0; b < si->depth; b++) {
        const mst_st_tensor *qkv = find(st, "layers.%d.blocks.%d.attn.qkv.weight", s, b);
        const mst_st_tensor *fc1 = find(st, "layers.%d.blocks.%d.mlp.fc1.weight", s, b);
        char what[96];
        snprintf(what, sizeof what, "layers.%d.blocks.%d.mlp.fc1.weight", s, b);
        mst_status r = need(st, qkv, "qkv", 2, err);
        if (r == MST_OK) r = need(st, fc1, what, 2, err);
        if (r != MST_OK) return r;
        int heads = 0, window = 0;
        r = block_geometry(st, s, b, &heads, &window, err);
        if (r != MST_OK) return r;
        int dim = (int)qkv->shape[1];
        if (b == 0) {
            si->dim = dim;
            si->heads = heads;
            si->window = window;
            si->mlp_hidden = (int)fc1->shape[0];
        }
        if (qkv->shape[0] != 3 * (int64_t)dim || dim != si->dim || heads != si->heads ||
            window != si->window || dim % heads != 0 || fc1->shape[1] != dim ||
            fc1->shape[0] != si->mlp_hidden)
            return mst_fail(err, MST_ERR_SHAPE,
                            "%s: block layers.%d.blocks.%d disagrees with its stage (dim %d, heads %d, "
                            "window %d, qkv [%lld,%lld])",
                            st->path, s, b, si->dim, si->heads, si->window, (long long)qkv->shape[0],
                            (long long)qkv->shape[1]);
    }
    si->has_downsample = find(st, "layers.%d.downsample.reduction.weight", s, 0) != NULL;
    return MST_OK;
}

/* attn_mask [nW, w*w, w*w] of a shifted block gives that stage's resolution,
 * and so the image size (0: no such buffer). */
static mst_status img_from_masks(const mst_safetensors *st, const mst_arch *a, const mst_stage_info *si, int *img,
                                 mst_error *err)
{
    int merges = 0;
    *img = 0;
    for (int s = 0; s < a->num_stages; merges += si[s].has_downsample, s++) {
        for (int b = 0; b < si[s].depth; b++) {
            const mst_st_tensor *t = find(st, "layers.%d.blocks.%d.attn_mask", s, b);
            if (!t) continue;
            int n = si[s].window * si[s].window, per_row = (int)lround(sqrt((double)(t->ndim ? t->shape[0] : 0)));
            if (t->ndim != 3 || per_row < 1 || per_row * per_row != t->shape[0] || t->shape[1] != n || t->shape[2] != n)
                return mst_fail(err, MST_ERR_SHAPE, "%s: %s is not [windows, %d, %d] for a square grid of windows",
                                st->path, t->name, n, n);
            *img = per_row * si[s].window * a->patch_size * (1 << merges);
            return MST_OK;
        }
    }
    return MST_OK;
}

static mst_status image_size(const mst_safetensors *st, mst_arch *a, const mst_stage_info *si,
                             int flag, mst_error *err)
{
    int from_mask;
    mst_status r = img_from_masks(st, a, si, &from_mask, err);
    if (r != MST_OK) return r;
    const char *meta = mst_st_meta(st, "img_size");
    int from_meta = meta ? atoi(meta) : 0;
    if (flag > 0 && from_mask > 0 && flag != from_mask)
        return mst_fail(err, MST_ERR_ARG, "%s: image size %d given, but the attn_mask buffers imply %d",
                        st->path, flag, from_mask);
    a->img_size = flag > 0 ? flag : (from_mask > 0 ? from_mask : from_meta);
    if (a->img_size <= 0)
        return mst_fail(err, MST_ERR_MISSING,
                        "%s: cannot infer the image size (no attn_mask buffers, no img_size in "
                        "__metadata__); pass --img-size",
                        st->path);
    return MST_OK;
}

/* Resolutions, the window-clipping rule of Swin, and divisibility. */
static mst_status resolutions(const mst_safetensors *st, mst_arch *a, mst_stage_info *si,
                              mst_error *err)
{
    if (a->img_size % a->patch_size)
        return mst_fail(err, MST_ERR_SHAPE, "%s: image size %d is not a multiple of patch size %d",
                        st->path, a->img_size, a->patch_size);
    int res = a->img_size / a->patch_size;
    for (int s = 0; s < a->num_stages; s++) {
        si[s].resolution = res;
        if (res < si[s].window || res % si[s].window)
            return mst_fail(err, MST_ERR_SHAPE,
                            "%s: stage %d resolution %d does not fit window %d (image size %d)", st->path,
                            s, res, si[s].window, a->img_size);
        if (si[s].has_downsample && res % 2)
            return mst_fail(err, MST_ERR_SHAPE, "%s: stage %d resolution %d is odd but is downsampled",
                            st->path, s, res);
        if (si[s].has_downsample) res /= 2;
    }
    return MST_OK;
}

/* Widths must chain: stage 0 takes the embedding, patch merging doubles it. */
static mst_status check_widths(const mst_safetensors *st, const mst_arch *a, const mst_stage_info *si, mst_error *err)
{
    if (a->embed_dim < 1 || a->in_chans < 1 || a->num_classes < 1)
        return mst_fail(err, MST_ERR_SHAPE, "%s: zero-sized patch embedding or head", st->path);
    int blocks = 0;
    for (int s = 0; s < a->num_stages; s++) {
        int want = s == 0 ? a->embed_dim : si[s - 1].dim * (si[s - 1].has_downsample ? 2 : 1);
        if (si[s].dim != want)
            return mst_fail(err, MST_ERR_SHAPE, "%s: stage %d has width %d but receives %d channels (%s)", st->path, s,
                            si[s].dim, want, s == 0 ? "patch_embed.proj.weight" : "the stage before it");
        if (si[s].mlp_hidden < 1 || si[s].dim < 1)
            return mst_fail(err, MST_ERR_SHAPE, "%s: stage %d has a zero-sized layer", st->path, s);
        blocks += si[s].depth;
    }
    if (3 * blocks > 0x10000)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "%s: %d blocks; the mask key numbers at most 21845", st->path, blocks);
    return MST_OK;
}

mst_status mst_infer_arch(const mst_safetensors *st, int img_flag, mst_arch *a, mst_stage_info **out,
                          mst_error *err)
{
    *out = NULL;
    const mst_st_tensor *pe = mst_st_find(st, "patch_embed.proj.weight");
    mst_status r = need(st, pe, "patch_embed.proj.weight", 4, err);
    if (r != MST_OK) return r;
    if (pe->shape[2] != pe->shape[3] || pe->shape[2] < 1)
        return mst_fail(err, MST_ERR_SHAPE, "%s: patch_embed.proj.weight kernel is not square", st->path);
    a->embed_dim = (int)pe->shape[0];
    a->in_chans = (int)pe->shape[1];
    a->patch_size = (int)pe->shape[2];
    a->num_stages = count_stages(st);
    if (a->num_stages == 0)
        return mst_fail(err, MST_ERR_MISSING, "%s: no layers.0.blocks.0.attn.qkv.weight: not an MST/Swin checkpoint",
                        st->path);
    mst_stage_info *si = calloc((size_t)a->num_stages, sizeof *si);
    if (!si) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    *out = si;
    for (int s = 0; s < a->num_stages && r == MST_OK; s++) r = stage_shape(st, s, &si[s], err);
    if (r != MST_OK) return r;
    const mst_st_tensor *head = mst_st_find(st, "head.weight");
    r = need(st, head, "head.weight", 2, err);
    if (r != MST_OK) return r;
    a->num_classes = (int)head->shape[0];
    a->mlp_bn = mst_st_find(st, "layers.0.blocks.0.mlp.norm1.weight") != NULL;
    a->stages = si;
    r = check_widths(st, a, si, err);
    if (r == MST_OK) r = image_size(st, a, si, img_flag, err);
    return r == MST_OK ? resolutions(st, a, si, err) : r;
}
