/* The safetensors reader and the checkpoint loader: every rejection path
 * gives its own one-line message, and valid F32/F16/BF16 data converts exactly. */
#include <math.h>

#include "helpers.h"
#include "host/data/npy.h"
#include "host/model/safetensors.h"
#include "mst/mst.h"

static mst_status open_st(const char *path, mst_error *err)
{
    mst_safetensors st;
    mst_status r = mst_st_open(path, &st, err);
    mst_st_close(&st);
    return r;
}

typedef struct {
    const char *what, *header;
    size_t data_bytes;
    unsigned long long len_override;
    const char *expect;
} bad_file;

static const bad_file bad_files[] = {
    {"header too long", "{}", 0, 200000000ull, "over the 100000000-byte limit"},
    {"header past end", "{}", 0, 64, "truncated: header length 64"},
    {"bad JSON", "{\"a\": [1, 2", 0, 0, "bad JSON header"},
    {"duplicate names",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, 0, "duplicate"},
    {"overlapping offsets",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, 0, "overlap"},
    {"offsets outside the file", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0,
     "outside the 8-byte data section"},
    {"gap between tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, 0, "gap of 4 bytes"},
    {"shape disagrees with byte count", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
     "shape needs 12 bytes"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F24\",\"shape\":[1],\"data_offsets\":[0,3]}}", 3, 0, "unknown dtype"},
    {"trailing bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, 0,
     "cover 4 bytes but the data section holds 12"},
    {"2^40 elements claimed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,8]}}", 8, 0,
     "shape needs 4398046511104 bytes"},
    {"2^40 elements claimed, offsets to match",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,4398046511104]}}", 8, 0,
     "outside the 8-byte data section"},
    {"shape overflows", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}", 8, 0,
     "shape overflows"},
    {"metadata not strings", "{\"__metadata__\":{\"x\":1}}", 0, 0, "is not a string"},
    {"not an object", "[1,2]", 0, 0, "not a JSON object"},
};

Test(safetensors, rejects_malformed_files)
{
    static const unsigned char zeros[64];
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        const bad_file *c = &bad_files[i];
        const char *p = tmp_path("bad.safetensors");
        write_raw_st(p, c->header, zeros, c->data_bytes, c->len_override);
        mst_error err = {0};
        cr_expect_eq(open_st(p, &err), MST_ERR_FORMAT, "%s: accepted", c->what);
        cr_expect(contains(err.msg, c->expect), "%s: message \"%s\" lacks \"%s\"", c->what, err.msg, c->expect);
        cr_expect(contains(err.msg, p), "%s: message does not name the file", c->what);
        unlink(p);
    }
}

Test(safetensors, rejects_truncated_and_missing_files)
{
    const char *p = tmp_path("short.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    mst_error err = {0};
    cr_expect_eq(open_st(p, &err), MST_ERR_FORMAT);
    cr_expect(contains(err.msg, "truncated safetensors file: 3 bytes"), "%s", err.msg);
    unlink(p);
    cr_expect_eq(open_st(p, &err), MST_ERR_IO);
    cr_expect(contains(err.msg, "cannot open"), "%s", err.msg);
}

Test(safetensors, converts_f32_f16_bf16_f64_exactly)
{
    /* a: F32 {1.5, -0.25}; b: F16 {1, -2, 2^-24, 65504}; c: BF16 {1, 3.140625};
     * d: F64 {0.1 (rounds to 0.1f), -3} */
    unsigned char data[8 + 8 + 4 + 16];
    float a[2] = {1.5f, -0.25f};
    uint16_t b[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF}, c[2] = {0x3F80, 0x4049};
    double d[2] = {0.1, -3.0};
    memcpy(data, a, 8);
    memcpy(data + 8, b, 8);
    memcpy(data + 16, c, 4);
    memcpy(data + 20, d, 16);
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[8,16]},"
                    "\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[16,20]},"
                    "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[20,36]},"
                    "\"__metadata__\":{\"k\":\"v\"}}";
    const char *p = tmp_path("ok.safetensors");
    write_raw_st(p, h, data, sizeof data, 0);
    mst_safetensors st;
    mst_error err = {0};
    cr_assert_eq(mst_st_open(p, &st, &err), MST_OK, "%s", err.msg);
    cr_expect_str_eq(mst_st_meta(&st, "k"), "v");
    float *x;
    int64_t shape[2] = {2, -1};
    cr_assert_eq(mst_st_read_f32(&st, "a", 1, NULL, &x, &err), MST_OK);
    cr_expect(x[0] == 1.5f && x[1] == -0.25f);
    free(x);
    cr_assert_eq(mst_st_read_f32(&st, "b", 2, shape, &x, &err), MST_OK, "%s", err.msg);
    cr_expect(x[0] == 1.0f && x[1] == -2.0f && x[2] == ldexpf(1.0f, -24) && x[3] == 65504.0f);
    free(x);
    cr_assert_eq(mst_st_read_f32(&st, "c", 1, NULL, &x, &err), MST_OK);
    cr_expect(x[0] == 1.0f && x[1] == 3.140625f);
    free(x);
    cr_assert_eq(mst_st_read_f32(&st, "d", 1, NULL, &x, &err), MST_OK, "%s", err.msg);
    cr_expect(x[0] == 0.1f && x[1] == -3.0f);
    free(x);
    int64_t wrong[1] = {3};
    cr_expect_eq(mst_st_read_f32(&st, "c", 1, wrong, &x, &err), MST_ERR_SHAPE);
    cr_expect(contains(err.msg, "has shape [2], expected [3]"), "%s", err.msg);
    mst_st_close(&st);
    unlink(p);
}

Test(safetensors, rejects_integer_dtype_for_weights)
{
    const char *p = tmp_path("int.safetensors");
    int32_t v[2] = {1, 2};
    write_raw_st(p, "{\"w\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", v, 8, 0);
    mst_safetensors st;
    mst_error err = {0};
    cr_assert_eq(mst_st_open(p, &st, &err), MST_OK, "%s", err.msg);
    float *x;
    cr_expect_eq(mst_st_read_f32(&st, "w", -1, NULL, &x, &err), MST_ERR_FORMAT);
    cr_expect(contains(err.msg, "\"w\" has dtype I32; expected F32, F16, BF16 or F64"), "%s", err.msg);
    mst_st_close(&st);
    unlink(p);
}

/* ---- checkpoint-level errors: a real test model, one tensor changed ---- */

typedef enum { DROP, DROP_PREFIX, RESHAPE, POKE, RETYPE } edit_kind;

typedef struct {
    const char *what, *tensor;
    edit_kind kind;
    float value;
    mst_status status;
    const char *expect;
} bad_model;

/* Pieces of a rewritten safetensors file: a tensor's shape, its header
 * entry at [at, at + n) of the new data section, and the write-out. */
static json_t *shape_of(const mst_st_tensor *t)
{
    json_t *shape = json_array();
    for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
    return shape;
}

static void add_entry(json_t *h, const char *name, const char *dtype, json_t *shape, size_t at, size_t n)
{
    json_object_set_new(h, name, json_pack("{s:s, s:o, s:[I,I]}", "dtype", dtype, "shape", shape, "data_offsets",
                                           (json_int_t)at, (json_int_t)(at + n)));
}

static void write_out(const char *out, json_t *h, unsigned char *data, size_t n)
{
    char *text = json_dumps(h, JSON_COMPACT);
    write_raw_st(out, text, data, n, 0);
    free(text);
    free(data);
    json_decref(h);
}

/* Copies tiny_bn.safetensors to `out` with one edit applied to `name`. */
static void rewrite(const char *out, const bad_model *c)
{
    mst_safetensors st;
    mst_error err = {0};
    cr_assert_eq(mst_st_open(DATA("tiny_bn.safetensors"), &st, &err), MST_OK, "%s", err.msg);
    json_t *h = json_object();
    size_t total = 0, at = 0;
    for (int i = 0; i < st.num_tensors; i++) total += st.tensors[i].end - st.tensors[i].begin;
    unsigned char *data = malloc(total + 8);
    for (int i = 0; i < st.num_tensors; i++) {
        const mst_st_tensor *t = &st.tensors[i];
        int hit = c->kind == DROP_PREFIX ? strncmp(t->name, c->tensor, strlen(c->tensor)) == 0
                                         : strcmp(t->name, c->tensor) == 0;
        if (hit && (c->kind == DROP || c->kind == DROP_PREFIX)) continue;
        size_t n = t->end - t->begin;
        memcpy(data + at, st.data + t->begin, n);
        if (hit && c->kind == POKE) memcpy(data + at, &c->value, 4);
        json_t *shape = shape_of(t);
        if (hit && c->kind == RESHAPE) { /* same bytes, split the first axis */
            json_array_set_new(shape, 0, json_integer(t->shape[0] / 2));
            json_array_insert_new(shape, 0, json_integer(2));
        }
        add_entry(h, t->name, hit && c->kind == RETYPE ? "I32" : t->dtype, shape, at, n);
        at += n;
    }
    write_out(out, h, data, at);
    mst_st_close(&st);
}

static const bad_model bad_models[] = {
    {"missing tensor", "layers.1.blocks.0.attn.proj.weight", DROP, 0, MST_ERR_MISSING,
     "missing tensor \"layers.1.blocks.0.attn.proj.weight\""},
    {"missing threshold", "layers.0.blocks.1.mlp.fc2_if.up", DROP, 0, MST_ERR_MISSING,
     "missing tensor \"layers.0.blocks.1.mlp.fc2_if.up\""},
    {"wrong shape", "layers.0.blocks.0.mlp.fc2.weight", RESHAPE, 0, MST_ERR_SHAPE,
     "\"layers.0.blocks.0.mlp.fc2.weight\" has shape [2,8,48], expected [16,48]"},
    {"NaN threshold", "layers.0.blocks.0.attn.q_if.up", POKE, NAN, MST_ERR_VALUE,
     "\"layers.0.blocks.0.attn.q_if.up\" has a non-finite value"},
    {"negative threshold", "layers.1.downsample.reduction_if.up", POKE, -1.0f, MST_ERR_VALUE,
     "threshold \"layers.1.downsample.reduction_if.up\" is -1; it must be > 0"},
    {"NaN weight", "head.weight", POKE, NAN, MST_ERR_VALUE, "\"head.weight\" has a non-finite value"},
    {"infinite BN variance", "layers.0.blocks.0.norm1.running_var", POKE, INFINITY, MST_ERR_VALUE,
     "non-finite value"},
    {"negative BN variance", "patch_embed.norm.running_var", POKE, -2.0f, MST_ERR_VALUE,
     "patch_embed.norm.running_var[0] = -2 is negative"},
    {"integer weight", "layers.0.blocks.0.attn.qkv.weight", RETYPE, 0, MST_ERR_FORMAT,
     "has dtype I32; expected F32, F16, BF16 or F64"},
    {"no patch embedding", "patch_embed.proj.weight", DROP, 0, MST_ERR_MISSING,
     "missing tensor patch_embed.proj.weight"},
    {"missing bias table", "layers.2.blocks.1.attn.relative_position_bias_table", DROP, 0, MST_ERR_MISSING,
     "layers.2.blocks.1.attn.relative_position_bias_table"},
    {"no patch merging between stages", "layers.0.downsample.", DROP_PREFIX, 0, MST_ERR_SHAPE,
     "stage 1 has width 32 but receives 16 channels"},
    {"gap in the block numbers", "layers.2.blocks.0.", DROP_PREFIX, 0, MST_ERR_FORMAT,
     "unexpected tensor \"layers.2.blocks.1."},
    {"malformed attn_mask", "layers.0.blocks.1.attn_mask", RESHAPE, 0, MST_ERR_SHAPE,
     "layers.0.blocks.1.attn_mask is not [windows, 16, 16]"},
};

Test(checkpoint, rejects_bad_models_with_named_errors)
{
    for (size_t i = 0; i < sizeof bad_models / sizeof bad_models[0]; i++) {
        const bad_model *c = &bad_models[i];
        const char *p = tmp_path("model.safetensors");
        rewrite(p, c);
        mst_model *m = NULL;
        mst_error err = {0};
        mst_status s = mst_model_load(p, NULL, &m, &err);
        cr_expect_eq(s, c->status, "%s: status %d (%s)", c->what, s, err.msg);
        cr_expect(contains(err.msg, c->expect), "%s: \"%s\" lacks \"%s\"", c->what, err.msg, c->expect);
        cr_expect(m == NULL);
        cr_expect(strchr(err.msg, '\n') == NULL, "%s: message is not one line", c->what);
        unlink(p);
    }
}

static uint16_t to_half(float f) /* round to nearest even; test weights are normal and small */
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xFFu, man = x & 0x7FFFFFu;
    if (exp < 103) return (uint16_t)sign; /* below half's subnormals */
    if (exp < 113) {                      /* half subnormal */
        man |= 0x800000u;
        int shift = (int)(126 - exp);
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        h += rem > half || (rem == half && (h & 1));
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((exp - 112) << 10) | (man >> 13), rem = man & 0x1FFFu;
    h += rem > 0x1000u || (rem == 0x1000u && (h & 1));
    return (uint16_t)(sign | h);
}

static uint16_t to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

/* Copies a test model with every F32 tensor stored as `dtype` (F16 or BF16). */
static void retype(const char *src, const char *out, const char *dtype)
{
    mst_safetensors st;
    mst_error err = {0};
    cr_assert_eq(mst_st_open(src, &st, &err), MST_OK, "%s", err.msg);
    json_t *h = json_object();
    unsigned char *data = malloc(st.data_size + 8);
    size_t at = 0;
    for (int i = 0; i < st.num_tensors; i++) {
        const mst_st_tensor *t = &st.tensors[i];
        size_t n = t->end - t->begin;
        int convert = strcmp(t->dtype, "F32") == 0;
        if (convert) {
            for (size_t k = 0; k < n / 4; k++) {
                float f;
                memcpy(&f, st.data + t->begin + 4 * k, 4);
                uint16_t v = strcmp(dtype, "F16") == 0 ? to_half(f) : to_bf16(f);
                memcpy(data + at + 2 * k, &v, 2);
            }
            n /= 2;
        } else {
            memcpy(data + at, st.data + t->begin, n);
        }
        add_entry(h, t->name, convert ? dtype : t->dtype, shape_of(t), at, n);
        at += n;
    }
    json_t *meta = json_object();
    for (int i = 0; i < st.num_meta; i++) json_object_set_new(meta, st.meta_keys[i], json_string(st.meta_values[i]));
    json_object_set_new(h, "__metadata__", meta);
    write_out(out, h, data, at);
    mst_st_close(&st);
}

/* The same model in F16 and BF16 loads, runs, and predicts like the F32 one
 * (the weights are rounded, so only agreement to their precision is asked). */
Test(checkpoint, loads_f16_and_bf16_models)
{
    const char *dtypes[] = {"F16", "BF16"};
    float tol[] = {0.05f, 0.10f}; /* weight rounding flips a few QCFS levels in this small net */
    mst_npy x;
    mst_error err = {0};
    cr_assert_eq(mst_npy_read(DATA("tiny_nobn_input.npy"), &x, &err), MST_OK, "%s", err.msg);
    float ref[4 * 7], got[4 * 7];
    mst_engine_opts o = {.mode = MST_MODE_ANN, .max_batch = 4};
    for (int i = -1; i < 2; i++) {
        const char *p = i < 0 ? DATA("tiny_nobn.safetensors") : tmp_path("retyped.safetensors");
        if (i >= 0) retype(DATA("tiny_nobn.safetensors"), p, dtypes[i]);
        mst_model *m;
        mst_engine *e;
        cr_assert_eq(mst_model_load(p, NULL, &m, &err), MST_OK, "%s: %s", i < 0 ? "F32" : dtypes[i], err.msg);
        cr_assert_eq(mst_engine_create(m, &o, &e, &err), MST_OK, "%s", err.msg);
        cr_assert_eq(mst_engine_run(e, x.data, 4, 0, i < 0 ? ref : got, &err), MST_OK, "%s", err.msg);
        mst_engine_free(e);
        mst_model_free(m);
        if (i < 0) continue;
        float scale = 0, dev = 0;
        for (int k = 0; k < 4 * 7; k++) {
            scale = fmaxf(scale, fabsf(ref[k]));
            dev = fmaxf(dev, fabsf(got[k] - ref[k]));
        }
        cr_expect(dev <= tol[i] * scale, "%s: logits move by %g of scale %g", dtypes[i], dev, scale);
        cr_log_info("%s: logits move by %g of scale %g", dtypes[i], dev, scale);
        unlink(p);
    }
    mst_npy_free(&x);
}

Test(checkpoint, infers_both_test_architectures)
{
    mst_model *m;
    mst_error err = {0};
    cr_assert_eq(mst_model_load(DATA("tiny_bn.safetensors"), NULL, &m, &err), MST_OK, "%s", err.msg);
    const mst_arch *a = mst_model_arch(m);
    cr_expect(a->img_size == 32 && a->patch_size == 2 && a->embed_dim == 16 && a->num_classes == 10);
    cr_expect(a->num_stages == 3 && a->mlp_bn == 1 && a->in_chans == 3);
    int depth[3] = {2, 2, 2}, heads[3] = {1, 2, 4}, res[3] = {16, 8, 4}, hidden[3] = {48, 96, 192};
    for (int s = 0; s < 3; s++)
        cr_expect(a->stages[s].depth == depth[s] && a->stages[s].heads == heads[s] && a->stages[s].window == 4 &&
                      a->stages[s].resolution == res[s] && a->stages[s].mlp_hidden == hidden[s],
                  "stage %d", s);
    cr_expect_eq(a->num_if_sites, 1 + 6 * 10 + 2);
    cr_expect_str_eq(mst_model_site_name(m, 5), "layers.0.blocks.0.attn.attn_if");
    mst_model_free(m);

    /* no attn_mask buffers: the image size comes from __metadata__ */
    cr_assert_eq(mst_model_load(DATA("tiny_nobn.safetensors"), NULL, &m, &err), MST_OK, "%s", err.msg);
    a = mst_model_arch(m);
    cr_expect(a->img_size == 28 && a->num_stages == 2 && a->mlp_bn == 0 && a->num_classes == 7);
    cr_expect(a->stages[0].window == 7 && a->stages[1].window == 7 && a->stages[1].heads == 3);
    mst_model_free(m);
}

Test(checkpoint, image_size_flag_must_agree_with_buffers)
{
    mst_model *m = NULL;
    mst_error err = {0};
    mst_load_opts o = {.img_size = 64};
    cr_expect_eq(mst_model_load(DATA("tiny_bn.safetensors"), &o, &m, &err), MST_ERR_ARG);
    cr_expect(contains(err.msg, "image size 64 given, but the attn_mask buffers imply 32"), "%s", err.msg);
    o.img_size = 30; /* 15 tokens a side cannot be cut into 7x7 windows */
    cr_expect_eq(mst_model_load(DATA("tiny_nobn.safetensors"), &o, &m, &err), MST_ERR_SHAPE);
    cr_expect(contains(err.msg, "does not fit window 7"), "%s", err.msg);
}

/* A copy of a test model with one more __metadata__ entry. */
static void with_meta(const char *src, const char *out, const char *key, const char *value)
{
    mst_safetensors st;
    mst_error err = {0};
    cr_assert_eq(mst_st_open(src, &st, &err), MST_OK, "%s", err.msg);
    json_t *h = json_object(), *meta = json_object();
    for (int i = 0; i < st.num_tensors; i++)
        add_entry(h, st.tensors[i].name, st.tensors[i].dtype, shape_of(&st.tensors[i]), st.tensors[i].begin,
                  st.tensors[i].end - st.tensors[i].begin);
    for (int i = 0; i < st.num_meta; i++) json_object_set_new(meta, st.meta_keys[i], json_string(st.meta_values[i]));
    json_object_set_new(meta, key, json_string(value));
    json_object_set_new(h, "__metadata__", meta);
    unsigned char *data = malloc(st.data_size + 1); /* write_out frees it */
    memcpy(data, st.data, st.data_size);
    write_out(out, h, data, st.data_size);
    mst_st_close(&st);
}

/* __metadata__ mask_sites (tools/train.py --mask-sites) is the model's
 * default; an engine's option overrides it; a bad list is a clear error. */
Test(checkpoint, mask_sites_from_metadata)
{
    const char *p = tmp_path("sites.safetensors");
    mst_model *m = NULL;
    mst_engine *e = NULL;
    mst_error err = {0};
    cr_assert_eq(mst_model_load(DATA("tiny_nobn.safetensors"), NULL, &m, &err), MST_OK, "%s", err.msg);
    cr_expect_eq(mst_model_arch(m)->mask_sites, MST_MASK_RELEASED, "no metadata: the released code's sites");
    cr_expect_eq(mst_model_arch(m)->num_mask_sites, 5 * 5, "q, k, attn, fc1, fc2 of 5 blocks");
    mst_model_free(m);
    with_meta(DATA("tiny_nobn.safetensors"), p, "mask_sites", "q,k,attn,fc1");
    cr_assert_eq(mst_model_load(p, NULL, &m, &err), MST_OK, "%s", err.msg);
    cr_expect_eq(mst_model_arch(m)->mask_sites, MST_MASK_RELEASED | MST_MASK_FC1);
    mst_engine_opts o = {.mode = MST_MODE_ANN, .max_batch = 1, .device = MST_DEVICE_CPU};
    cr_assert_eq(mst_engine_create(m, &o, &e, &err), MST_OK, "%s", err.msg);
    cr_expect_eq(mst_engine_mask_sites(e), MST_MASK_RELEASED | MST_MASK_FC1);
    mst_engine_free(e);
    o.mask_sites = MST_MASK_FC2;
    cr_assert_eq(mst_engine_create(m, &o, &e, &err), MST_OK, "%s", err.msg);
    cr_expect_eq(mst_engine_mask_sites(e), MST_MASK_FC2);
    mst_engine_free(e);
    o.mask_sites = 1u << 7;
    cr_expect_eq(mst_engine_create(m, &o, &e, &err), MST_ERR_ARG);
    cr_expect(contains(err.msg, "mask sites 0x80"), "%s", err.msg);
    mst_model_free(m);
    with_meta(DATA("tiny_nobn.safetensors"), p, "mask_sites", "q,qq");
    cr_expect_eq(mst_model_load(p, NULL, &m, &err), MST_ERR_FORMAT);
    cr_expect(contains(err.msg, "__metadata__ mask_sites: mask site \"qq\" is not one of"), "%s", err.msg);
    unlink(p);
    char buf[64];
    cr_expect_str_eq(mst_mask_sites_name(MST_MASK_ALL, buf, sizeof buf), "q,k,attn,fc1,fc2");
    unsigned s = 0;
    cr_expect_eq(mst_mask_sites_parse("fc2,q", &s, &err), MST_OK);
    cr_expect_eq(s, MST_MASK_FC2 | MST_MASK_Q);
}
