#include "synth.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"

static const mst_synth_arch archs[] = {
    {"swin-t", 224, 4, 3, 96, 4, {2, 2, 6, 2}, {3, 6, 12, 24}, 7, 4, 1000, 1},
    {"fmnist", 32, 4, 1, 64, 2, {2, 2}, {2, 4}, 4, 4, 10, 0},
    /* 28x28 and 14x14 tokens: per-image row counts that no 12-row kernel
       panel or 256-row tile divides; 100 classes, as CIFAR-100 (the
       invariance tests' model) */
    {"grid28", 56, 2, 1, 24, 2, {2, 2}, {2, 4}, 7, 4, 100, 1},
};

const mst_synth_arch *mst_synth_find(const char *name)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!strcmp(archs[i].name, name)) return &archs[i];
    return NULL;
}

const char *mst_synth_names(void) { return "swin-t, fmnist, grid28"; }

typedef struct {
    FILE *data;        /* tensor bytes, appended in order */
    json_t *header;
    size_t offset;
    uint64_t rng;
} writer;

static double uniform(writer *w) /* splitmix64 -> [0, 1) */
{
    uint64_t z = (w->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

/* kind: 'u' uniform(-v, v), 'c' constant v */
static int tensor(writer *w, const char *name, int ndim, const long *shape, char kind, double v)
{
    long n = 1;
    json_t *sh = json_array();
    for (int i = 0; i < ndim; i++) n *= shape[i], json_array_append_new(sh, json_integer(shape[i]));
    json_object_set_new(w->header, name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", sh, "data_offsets",
                                                   (json_int_t)w->offset, (json_int_t)(w->offset + 4 * (size_t)n)));
    for (long i = 0; i < n; i++) {
        float x = kind == 'u' ? (float)((2.0 * uniform(w) - 1.0) * v) : (float)v;
        if (fwrite(&x, 4, 1, w->data) != 1) return 0;
    }
    w->offset += 4 * (size_t)n;
    return 1;
}

#define T1(name, n0, kind, v) ok &= tensor(w, name, 1, (long[]){n0}, kind, v)
#define T2(name, n0, n1, kind, v) ok &= tensor(w, name, 2, (long[]){n0, n1}, kind, v)

static int batchnorm(writer *w, const char *p, long C)
{
    char n[256];
    int ok = 1;
    snprintf(n, sizeof n, "%.200s.weight", p), T1(n, C, 'c', 1.0);
    snprintf(n, sizeof n, "%.200s.bias", p), T1(n, C, 'u', 0.1);
    snprintf(n, sizeof n, "%.200s.running_mean", p), T1(n, C, 'u', 0.1);
    snprintf(n, sizeof n, "%.200s.running_var", p), T1(n, C, 'c', 1.0);
    return ok;
}

/* Linear layer: weights of variance 1/fan_in, so outputs stay O(1). */
static int linear(writer *w, const char *p, long out, long in, int bias)
{
    char n[256];
    int ok = 1;
    snprintf(n, sizeof n, "%.200s.weight", p), T2(n, out, in, 'u', sqrt(3.0 / (double)in));
    if (bias) snprintf(n, sizeof n, "%.200s.bias", p), T1(n, out, 'u', 0.1);
    return ok;
}

/* Thresholds near the upper tail of unit-scale inputs; lower for the
 * attention scores, which are sums of few spikes. */
static int site(writer *w, const char *p, const char *s, double lam)
{
    char n[256];
    snprintf(n, sizeof n, "%.200s.%s.up", p, s);
    return tensor(w, n, 1, (long[]){1}, 'c', lam);
}

static int block(writer *w, const mst_synth_arch *a, int s, int b, long C, long h)
{
    char p[96], q[232];
    int ok = 1;
    long H = C * a->mlp_ratio, win = a->window;
    snprintf(p, sizeof p, "layers.%d.blocks.%d", s, b);
    snprintf(q, sizeof q, "%.200s.norm1", p), ok &= batchnorm(w, q, C);
    ok &= site(w, p, "shortcut1_if", 1.5);
    snprintf(q, sizeof q, "%.200s.attn.qkv", p), ok &= linear(w, q, 3 * C, C, 1);
    static const char *sites[] = {"q_if", "k_if", "v_if", "attn_if", "attn_v_if", "proj_if"};
    snprintf(q, sizeof q, "%.200s.attn", p);
    for (int i = 0; i < 6; i++) ok &= site(w, q, sites[i], i == 3 ? 1.0 : 1.5);
    snprintf(q, sizeof q, "%.200s.attn.relative_position_bias_table", p), T2(q, (2 * win - 1) * (2 * win - 1), h, 'u', 0.5);
    snprintf(q, sizeof q, "%.200s.attn.proj", p), ok &= linear(w, q, C, C, 1);
    snprintf(q, sizeof q, "%.200s.norm2", p), ok &= batchnorm(w, q, C);
    ok &= site(w, p, "shortcut2_if", 1.5);
    snprintf(q, sizeof q, "%.200s.mlp.fc1", p), ok &= linear(w, q, H, C, 1);
    if (a->mlp_bn) snprintf(q, sizeof q, "%.200s.mlp.norm1", p), ok &= batchnorm(w, q, H);
    snprintf(q, sizeof q, "%.200s.mlp", p), ok &= site(w, q, "fc1_if", 1.5);
    snprintf(q, sizeof q, "%.200s.mlp.fc2", p), ok &= linear(w, q, C, H, 1);
    if (a->mlp_bn) snprintf(q, sizeof q, "%.200s.mlp.norm2", p), ok &= batchnorm(w, q, C);
    snprintf(q, sizeof q, "%.200s.mlp", p), ok &= site(w, q, "fc2_if", 1.5);
    return ok;
}

static int tensors(writer *w, const mst_synth_arch *a)
{
    long C = a->embed_dim, P = a->patch;
    int ok = tensor(w, "patch_embed.proj.weight", 4, (long[]){C, a->in_chans, P, P}, 'u', sqrt(3.0 / (double)(a->in_chans * P * P)));
    T1("patch_embed.proj.bias", C, 'u', 0.1);
    ok &= batchnorm(w, "patch_embed.norm", C);
    ok &= site(w, "patch_embed", "proj_if", 1.5);
    for (int s = 0; s < a->num_stages; s++) {
        for (int b = 0; b < a->depths[s]; b++) ok &= block(w, a, s, b, C, a->heads[s]);
        if (s + 1 == a->num_stages) break;
        char p[96], q[232];
        snprintf(p, sizeof p, "layers.%d.downsample", s);
        snprintf(q, sizeof q, "%.200s.norm", p), ok &= batchnorm(w, q, 4 * C);
        snprintf(q, sizeof q, "%.200s.reduction", p), ok &= linear(w, q, 2 * C, 4 * C, 0);
        ok &= site(w, p, "reduction_if", 1.5);
        C *= 2;
    }
    T1("norm.weight", C, 'c', 1.0);
    T1("norm.bias", C, 'c', 0.0);
    return ok & linear(w, "head", a->num_classes, C, 1);
}

mst_status mst_synth_write(const mst_synth_arch *a, uint64_t seed, const char *path, mst_error *err)
{
    writer w = {.data = tmpfile(), .header = json_object(), .rng = seed};
    if (!w.data || !w.header) return mst_fail(err, MST_ERR_IO, "cannot make a temporary file for the %s weights", a->name);
    int ok = tensors(&w, a);
    char size[16];
    snprintf(size, sizeof size, "%d", a->img_size);
    json_object_set_new(w.header, "__metadata__", json_pack("{s:s, s:s, s:s}", "format", "mst", "img_size", size,
                                                            "dataset", "random"));
    char *text = json_dumps(w.header, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(w.header);
    FILE *f = fopen(path, "wb");
    if (!ok || !text || !f) {
        free(text);
        fclose(w.data);
        if (f) fclose(f);
        return mst_fail(err, MST_ERR_IO, "%s: cannot write the %s weights", path, a->name);
    }
    uint64_t len = strlen(text);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
    ok = fwrite(le, 1, 8, f) == 8 && fwrite(text, 1, len, f) == len;
    rewind(w.data);
    char buf[1 << 16];
    for (size_t n; ok && (n = fread(buf, 1, sizeof buf, w.data)) > 0;) ok = fwrite(buf, 1, n, f) == n;
    free(text);
    fclose(w.data);
    if (fclose(f) != 0 || !ok) return mst_fail(err, MST_ERR_IO, "%s: write failed", path);
    return MST_OK;
}
