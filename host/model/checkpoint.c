/* Opening a checkpoint of either format, and `mst convert`: the C twin of
 * tools/convert_pth.py, writing the same bytes. */
#include "checkpoint.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../error.h"
#include "model.h"
#include "pth.h"

/* tools/convert_pth.py's NORMALISATION, EVAL_TRANSFORM and CIFAR10 tables,
 * as its json.dumps prints them (the converted files are byte-identical). */
static const struct {
    const char *name, *mean, *std, *interpolation, *crop_pct, *class_names;
} datasets[] = {
    {"imagenet", "[0.485, 0.456, 0.406]", "[0.229, 0.224, 0.225]", "bicubic", "0.875", NULL},
    {"cifar10", "[0.4914, 0.4822, 0.4465]", "[0.2023, 0.1994, 0.201]", "bilinear", "1.0",
     "[\"airplane\", \"automobile\", \"bird\", \"cat\", \"deer\", \"dog\", \"frog\", \"horse\", \"ship\", \"truck\"]"},
    {"cifar100", "[0.4914, 0.4822, 0.4465]", "[0.2023, 0.1994, 0.201]", "bilinear", "1.0", NULL},
};

static mst_status set_meta(mst_safetensors *st, const char *key, const char *value, mst_error *err)
{
    char **k = realloc(st->meta_keys, sizeof *k * (size_t)(st->num_meta + 1));
    if (k) st->meta_keys = k;
    char **v = realloc(st->meta_values, sizeof *v * (size_t)(st->num_meta + 1));
    if (v) st->meta_values = v;
    if (!k || !v) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    st->meta_keys[st->num_meta] = strdup(key);
    st->meta_values[st->num_meta] = strdup(value);
    if (!st->meta_keys[st->num_meta] || !st->meta_values[st->num_meta]) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    st->num_meta++;
    return MST_OK;
}

static int64_t extent(const mst_safetensors *st, const char *name, int dim)
{
    const mst_st_tensor *t = mst_st_find(st, name);
    return t && dim < t->ndim ? t->shape[dim] : 0;
}

static int isqrt(int64_t n)
{
    int r = 0;
    while ((int64_t)(r + 1) * (r + 1) <= n) r++;
    return r;
}

/* convert_pth.py's infer_arch, printed as Python's json.dumps does. */
static void arch_json(const mst_safetensors *st, char *buf, size_t n)
{
    char depths[256] = "", heads[256] = "", window[256] = "", name[128];
    for (int s = 0;; s++) {
        snprintf(name, sizeof name, "layers.%d.blocks.0.attn.relative_position_bias_table", s);
        snprintf(buf, n, "layers.%d.blocks.0.attn.qkv.weight", s);
        if (!mst_st_find(st, buf) || s >= 16) break;
        unsigned char seen[1024] = {0}; /* the distinct block indices of the stage, as Python's set */
        int depth = 0;
        for (int i = 0; i < st->num_tensors; i++) {
            int ts, b, end = 0;
            if (sscanf(st->tensors[i].name, "layers.%d.blocks.%d.%n", &ts, &b, &end) == 2 && end && ts == s && b >= 0 &&
                b < 1024 && !seen[b])
                seen[b] = 1, depth++;
        }
        const char *sep = s ? ", " : "";
        snprintf(depths + strlen(depths), sizeof depths - strlen(depths), "%s%d", sep, depth);
        snprintf(heads + strlen(heads), sizeof heads - strlen(heads), "%s%lld", sep, (long long)extent(st, name, 1));
        snprintf(window + strlen(window), sizeof window - strlen(window), "%s%d", sep, (isqrt(extent(st, name, 0)) + 1) / 2);
    }
    snprintf(buf, n,
             "{\"patch\": %lld, \"in_chans\": %lld, \"embed_dim\": %lld, \"depths\": [%s], \"heads\": [%s], "
             "\"window\": [%s], \"num_classes\": %lld, \"mlp_bn\": %s}",
             (long long)extent(st, "patch_embed.proj.weight", 3), (long long)extent(st, "patch_embed.proj.weight", 1),
             (long long)extent(st, "patch_embed.proj.weight", 0), depths, heads, window,
             (long long)extent(st, "head.weight", 0), mst_st_find(st, "layers.0.blocks.0.mlp.norm1.weight") ? "true" : "false");
}

/* The file name's convention when no dataset is given. */
static const char *dataset_of_name(const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char low[256];
    size_t i = 0;
    for (; base[i] && i < sizeof low - 1; i++) low[i] = (char)tolower((unsigned char)base[i]);
    low[i] = 0;
    return strstr(low, "cifar100") ? "cifar100" : strstr(low, "cifar10") ? "cifar10" : strstr(low, "imagenet") ? "imagenet" : NULL;
}

mst_status mst_checkpoint_pth_metadata(mst_safetensors *st, const mst_load_opts *opts, mst_error *err)
{
    char arch[1024], num[32];
    arch_json(st, arch, sizeof arch);
    mst_status s = set_meta(st, "format", "mst", err);
    if (s == MST_OK) s = set_meta(st, "arch", arch, err);
    if (s == MST_OK && opts && opts->img_size > 0) {
        snprintf(num, sizeof num, "%d", opts->img_size);
        s = set_meta(st, "img_size", num, err);
    }
    const char *ds = opts && opts->dataset ? opts->dataset : dataset_of_name(st->path);
    if (s != MST_OK || !ds) return s;
    s = set_meta(st, "dataset", ds, err);
    for (size_t i = 0; s == MST_OK && i < sizeof datasets / sizeof datasets[0]; i++) {
        if (strcmp(ds, datasets[i].name)) continue;
        s = set_meta(st, "mean", datasets[i].mean, err);
        if (s == MST_OK) s = set_meta(st, "std", datasets[i].std, err);
        if (s == MST_OK) s = set_meta(st, "interpolation", datasets[i].interpolation, err);
        if (s == MST_OK) s = set_meta(st, "crop_pct", datasets[i].crop_pct, err);
        if (s == MST_OK && datasets[i].class_names) s = set_meta(st, "class_names", datasets[i].class_names, err);
    }
    return s;
}

static mst_status sniff(const char *path, int *pth, mst_error *err)
{
    uint8_t head[512];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return mst_fail(err, MST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    *pth = n > 0 && mst_pth_sniff(head, (size_t)n);
    return MST_OK;
}

mst_status mst_checkpoint_open(const char *path, const mst_load_opts *opts, mst_safetensors *st, mst_error *err)
{
    int pth;
    memset(st, 0, sizeof *st);
    mst_status s = sniff(path, &pth, err);
    if (s != MST_OK) return s;
    if (!pth && opts && opts->dataset)
        return mst_fail(err, MST_ERR_ARG, "%s: --dataset is for .pth checkpoints; a safetensors file carries its own __metadata__",
                        path);
    if (!pth) return mst_st_open(path, st, err);
    s = mst_pth_open(path, st, err);
    return s == MST_OK ? mst_checkpoint_pth_metadata(st, opts, err) : s;
}

/* ---- mst convert ----------------------------------------------------------- */

static int is_float(const char *dtype) { return dtype[0] == 'F' || !strcmp(dtype, "BF16"); }

static size_t written_size(const char *dtype)
{
    return is_float(dtype) ? 4 : (size_t)mst_st_dtype_size(dtype); /* floats as F32, as convert_pth.py writes them */
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const mst_st_tensor *const *)a)->name, (*(const mst_st_tensor *const *)b)->name);
}

/* json.dumps(header, separators=(",", ":")), padded with spaces to 8 bytes */
static char *header_json(const mst_safetensors *st, const mst_st_tensor **order)
{
    json_t *root = json_object(), *meta = json_object();
    size_t at = 0;
    for (int i = 0; i < st->num_tensors; i++) {
        const mst_st_tensor *t = order[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        size_t bytes = written_size(t->dtype) * (size_t)mst_st_numel(t);
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", is_float(t->dtype) ? "F32" : t->dtype, "shape", shape,
                              "data_offsets", (json_int_t)at, (json_int_t)(at + bytes));
        json_object_set_new(root, t->name, e);
        at += bytes;
    }
    for (int i = 0; i < st->num_meta; i++) json_object_set_new(meta, st->meta_keys[i], json_string(st->meta_values[i]));
    json_object_set_new(root, "__metadata__", meta);
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(root);
    size_t n = text ? strlen(text) : 0;
    char *padded = text ? realloc(text, n + 8) : NULL;
    if (!padded) {
        free(text);
        return NULL;
    }
    while (n % 8) padded[n++] = ' ';
    padded[n] = 0;
    return padded;
}

static int write_tensor(FILE *f, const mst_safetensors *st, const mst_st_tensor *t)
{
    int64_t n = mst_st_numel(t);
    if (!is_float(t->dtype) || !strcmp(t->dtype, "F32"))
        return fwrite(st->data + t->begin, 1, t->end - t->begin, f) == t->end - t->begin;
    float *x = NULL;
    mst_error ignored;
    if (mst_st_read_f32(st, t->name, -1, NULL, &x, &ignored) != MST_OK) return 0;
    int ok = fwrite(x, sizeof *x, (size_t)n, f) == (size_t)n;
    free(x);
    return ok;
}

static mst_status write_safetensors(const mst_safetensors *st, const char *out, mst_error *err)
{
    const mst_st_tensor **order = malloc(sizeof *order * (size_t)(st->num_tensors + 1));
    if (!order) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    for (int i = 0; i < st->num_tensors; i++) order[i] = &st->tensors[i];
    qsort(order, (size_t)st->num_tensors, sizeof *order, by_name);
    char *header = header_json(st, order);
    FILE *f = header ? fopen(out, "wb") : NULL;
    mst_status s = MST_OK;
    if (!header)
        s = mst_fail(err, MST_ERR_NOMEM, "out of memory");
    else if (!f)
        s = mst_fail(err, MST_ERR_IO, "%s: cannot create: %s", out, strerror(errno));
    uint64_t len = header ? strlen(header) : 0;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(len >> (8 * i));
    int ok = f && fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, len, f) == len;
    for (int i = 0; ok && i < st->num_tensors; i++) ok = write_tensor(f, st, order[i]);
    if (f && (fclose(f) != 0 || !ok)) {
        s = mst_fail(err, MST_ERR_IO, "%s: write failed: %s", out, strerror(errno));
        remove(out);
    }
    free(header);
    free(order);
    return s;
}

mst_status mst_convert(const char *in, const char *out, const mst_load_opts *opts, mst_error *err)
{
    mst_safetensors st = {0};
    mst_model *m = NULL;
    int pth;
    mst_status s = sniff(in, &pth, err);
    if (s == MST_OK && !pth) s = mst_fail(err, MST_ERR_ARG, "%s: not a torch.save (.pth) checkpoint", in);
    if (s == MST_OK) s = mst_pth_open(in, &st, err);
    if (s == MST_OK) s = mst_checkpoint_pth_metadata(&st, opts, err);
    if (s == MST_OK) s = mst_model_from_table(&st, opts, &m, err); /* a file mst could not run is not written */
    mst_model_free(m);
    if (s == MST_OK) s = write_safetensors(&st, out, err);
    mst_st_close(&st);
    return s;
}
