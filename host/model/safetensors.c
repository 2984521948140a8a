#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.h"

/* The format's own reader refuses headers over 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

int mst_st_dtype_size(const char *d)
{
    static const struct { const char *name; int size; } table[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"U64", 8},
        {"I32", 4}, {"U32", 4}, {"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1},
        {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(d, table[i].name) == 0) return table[i].size;
    return 0;
}

int64_t mst_st_numel(const mst_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

mst_status mst_st_map(const char *path, mst_safetensors *st, mst_error *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return mst_fail(err, MST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mst_fail(err, MST_ERR_IO, "%s: not a regular file", path);
    }
    st->map_size = (size_t)sb.st_size;
    if (st->map_size == 0) {
        close(fd);
        return mst_fail(err, MST_ERR_FORMAT, "%s: empty file", path);
    }
    void *p = mmap(NULL, st->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return mst_fail(err, MST_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    st->map = p;
    return MST_OK;
}

static mst_status parse_metadata(mst_safetensors *st, json_t *meta, mst_error *err)
{
    if (!json_is_object(meta))
        return mst_fail(err, MST_ERR_FORMAT, "%s: __metadata__ is not a JSON object", st->path);
    size_t n = json_object_size(meta);
    st->meta_keys = calloc(n + 1, sizeof(char *));
    st->meta_values = calloc(n + 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return mst_fail(err, MST_ERR_FORMAT, "%s: __metadata__ value of \"%s\" is not a string",
                            st->path, k);
        st->meta_keys[st->num_meta] = strdup(k);
        st->meta_values[st->num_meta] = strdup(json_string_value(v));
        st->num_meta++;
    }
    return MST_OK;
}

static mst_status parse_tensor(mst_safetensors *st, const char *name, json_t *desc,
                               mst_st_tensor *t, mst_error *err)
{
    t->name = strdup(name);
    json_t *dt = json_object_get(desc, "dtype");
    json_t *shape = json_object_get(desc, "shape");
    json_t *offs = json_object_get(desc, "data_offsets");
    if (!json_is_object(desc) || !json_is_string(dt) || !json_is_array(shape) ||
        !json_is_array(offs) || json_array_size(offs) != 2)
        return mst_fail(err, MST_ERR_FORMAT,
                        "%s: tensor \"%s\" needs dtype, shape and two data_offsets", st->path, name);
    const char *d = json_string_value(dt);
    int es = mst_st_dtype_size(d);
    if (es == 0)
        return mst_fail(err, MST_ERR_FORMAT, "%s: tensor \"%s\" has unknown dtype \"%s\"", st->path,
                        name, d);
    snprintf(t->dtype, sizeof t->dtype, "%s", d);
    t->ndim = (int)json_array_size(shape);
    t->shape = calloc((size_t)t->ndim + 1, sizeof(int64_t));
    if (!t->shape) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    uint64_t bytes = (uint64_t)es;
    for (int i = 0; i < t->ndim; i++) {
        json_t *e = json_array_get(shape, (size_t)i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return mst_fail(err, MST_ERR_FORMAT, "%s: tensor \"%s\" has a bad shape entry", st->path,
                            name);
        t->shape[i] = json_integer_value(e);
        uint64_t ext = (uint64_t)t->shape[i];
        if (ext != 0 && bytes > UINT64_MAX / ext)
            return mst_fail(err, MST_ERR_FORMAT, "%s: tensor \"%s\" shape overflows", st->path, name);
        bytes *= ext;
    }
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b))
        return mst_fail(err, MST_ERR_FORMAT, "%s: tensor \"%s\" has bad data_offsets", st->path, name);
    t->begin = (size_t)json_integer_value(b);
    t->end = (size_t)json_integer_value(e);
    if (t->end > st->data_size)
        return mst_fail(err, MST_ERR_FORMAT,
                        "%s: tensor \"%s\" bytes [%zu, %zu) lie outside the %zu-byte data section",
                        st->path, name, t->begin, t->end, st->data_size);
    if ((uint64_t)(t->end - t->begin) != bytes)
        return mst_fail(err, MST_ERR_FORMAT,
                        "%s: tensor \"%s\" shape needs %llu bytes of %s but data_offsets span %zu",
                        st->path, name, (unsigned long long)bytes, d, t->end - t->begin);
    return MST_OK;
}

static int by_begin(const void *a, const void *b)
{
    const mst_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

/* The format requires the tensors to tile the data section exactly. */
static mst_status check_layout(mst_safetensors *st, mst_error *err)
{
    mst_st_tensor *sorted = malloc(sizeof(mst_st_tensor) * (size_t)(st->num_tensors + 1));
    if (!sorted) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    memcpy(sorted, st->tensors, sizeof(mst_st_tensor) * (size_t)st->num_tensors);
    qsort(sorted, (size_t)st->num_tensors, sizeof *sorted, by_begin);
    size_t at = 0;
    mst_status s = MST_OK;
    for (int i = 0; i < st->num_tensors && s == MST_OK; i++) {
        if (sorted[i].begin < at)
            s = mst_fail(err, MST_ERR_FORMAT, "%s: tensors \"%s\" and \"%s\" overlap in the data section",
                         st->path, sorted[i - 1].name, sorted[i].name);
        else if (sorted[i].begin > at)
            s = mst_fail(err, MST_ERR_FORMAT, "%s: gap of %zu bytes before tensor \"%s\"", st->path,
                         sorted[i].begin - at, sorted[i].name);
        at = sorted[i].end;
    }
    if (s == MST_OK && at != st->data_size)
        s = mst_fail(err, MST_ERR_FORMAT,
                     "%s: tensors cover %zu bytes but the data section holds %zu (truncated or padded file)",
                     st->path, at, st->data_size);
    free(sorted);
    return s;
}

static mst_status parse_header(mst_safetensors *st, json_t *root, mst_error *err)
{
    if (!json_is_object(root))
        return mst_fail(err, MST_ERR_FORMAT, "%s: header is not a JSON object", st->path);
    st->tensors = calloc(json_object_size(root) + 1, sizeof(mst_st_tensor));
    if (!st->tensors) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        mst_status s = strcmp(k, "__metadata__") == 0
                           ? parse_metadata(st, v, err)
                           : parse_tensor(st, k, v, &st->tensors[st->num_tensors++], err);
        if (s != MST_OK) return s;
    }
    return check_layout(st, err);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp((*(const mst_st_tensor *const *)a)->name, (*(const mst_st_tensor *const *)b)->name);
}

mst_status mst_st_index(mst_safetensors *st, mst_error *err)
{
    st->by_name = malloc(sizeof(*st->by_name) * (size_t)(st->num_tensors + 1));
    st->used = calloc((size_t)st->num_tensors + 1, 1);
    if (!st->by_name || !st->used) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    for (int i = 0; i < st->num_tensors; i++) st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, (size_t)st->num_tensors, sizeof *st->by_name, name_cmp);
    for (int i = 1; i < st->num_tensors; i++)
        if (!strcmp(st->by_name[i - 1]->name, st->by_name[i]->name))
            return mst_fail(err, MST_ERR_FORMAT, "%s: tensor \"%s\" appears twice", st->path, st->by_name[i]->name);
    return MST_OK;
}

mst_status mst_st_open(const char *path, mst_safetensors *st, mst_error *err)
{
    memset(st, 0, sizeof *st);
    st->path = strdup(path);
    mst_status s = mst_st_map(path, st, err);
    if (s != MST_OK) return s;
    if (st->map_size < 8)
        return mst_fail(err, MST_ERR_FORMAT, "%s: truncated safetensors file: %zu bytes, the header length alone needs 8",
                        path, st->map_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | st->map[i];
    if (n > ST_MAX_HEADER)
        return mst_fail(err, MST_ERR_FORMAT, "%s: header length %llu is over the %llu-byte limit", path,
                        (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    if (n > st->map_size - 8)
        return mst_fail(err, MST_ERR_FORMAT,
                        "%s: truncated: header length %llu but only %zu bytes follow it", path,
                        (unsigned long long)n, st->map_size - 8);
    st->data = st->map + 8 + n;
    st->data_size = st->map_size - 8 - (size_t)n;
    json_error_t je;
    json_t *root = json_loadb((const char *)st->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return mst_fail(err, MST_ERR_FORMAT, "%s: bad JSON header: %s (line %d, column %d)", path,
                        je.text, je.line, je.column);
    s = parse_header(st, root, err);
    json_decref(root);
    return s == MST_OK ? mst_st_index(st, err) : s;
}

void mst_st_close(mst_safetensors *st)
{
    if (st->map) munmap((void *)st->map, st->map_size);
    for (int i = 0; i < st->num_tensors; i++) {
        free(st->tensors[i].name);
        free(st->tensors[i].shape);
    }
    for (int i = 0; i < st->num_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->tensors);
    free(st->owned);
    free(st->by_name);
    free(st->used);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->path);
    memset(st, 0, sizeof *st);
}

const mst_st_tensor *mst_st_find(const mst_safetensors *st, const char *name)
{
    mst_st_tensor key = {.name = (char *)name};
    const mst_st_tensor *kp = &key, **hit;
    hit = st->by_name ? bsearch(&kp, st->by_name, (size_t)st->num_tensors, sizeof *st->by_name, name_cmp) : NULL;
    return hit ? *hit : NULL;
}

const char *mst_st_meta(const mst_safetensors *st, const char *key)
{
    for (int i = 0; i < st->num_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    float f;
    if (exp == 0)
        f = ldexpf((float)man, -24);
    else if (exp == 31)
        f = man ? NAN : INFINITY;
    else
        f = ldexpf((float)(man | 0x400u), (int)exp - 25);
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits |= sign;
    memcpy(&f, &bits, 4);
    return f;
}

/* One dtype test per tensor, not per element: a Swin-T checkpoint has 28M. */
static void convert(const mst_st_tensor *t, const uint8_t *src, int64_t n, float *dst)
{
    if (strcmp(t->dtype, "F32") == 0) {
        memcpy(dst, src, sizeof(float) * (size_t)n); /* little-endian host assumed, as the format is */
    } else if (strcmp(t->dtype, "F64") == 0) {
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
    } else if (strcmp(t->dtype, "F16") == 0) {
        for (int64_t i = 0; i < n; i++) dst[i] = half_to_float((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(src[2 * i] | (src[2 * i + 1] << 8)) << 16;
            memcpy(&dst[i], &bits, 4);
        }
    }
}

static mst_status check_shape(const mst_safetensors *st, const mst_st_tensor *t, int ndim,
                              const int64_t *shape, mst_error *err)
{
    int ok = ndim < 0 || t->ndim == ndim;
    for (int i = 0; ok && shape && i < ndim; i++)
        ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (ok) return MST_OK;
    char got[128] = "", want[128] = "";
    for (int i = 0; i < t->ndim; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "",
                 (long long)t->shape[i]);
    for (int i = 0; i < ndim; i++) {
        if (!shape || shape[i] < 0)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s*", i ? "," : "");
        else
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "",
                     (long long)shape[i]);
    }
    return mst_fail(err, MST_ERR_SHAPE, "%s: tensor \"%s\" has shape [%s], expected [%s]", st->path,
                    t->name, got, want);
}

mst_status mst_st_read_f32(const mst_safetensors *st, const char *name, int ndim,
                           const int64_t *shape, float **out, mst_error *err)
{
    *out = NULL;
    const mst_st_tensor *t = mst_st_find(st, name);
    if (!t) return mst_fail(err, MST_ERR_MISSING, "%s: missing tensor \"%s\"", st->path, name);
    if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F16") && strcmp(t->dtype, "BF16") && strcmp(t->dtype, "F64"))
        return mst_fail(err, MST_ERR_FORMAT, "%s: tensor \"%s\" has dtype %s; expected F32, F16, BF16 or F64",
                        st->path, name, t->dtype);
    mst_status s = check_shape(st, t, ndim, shape, err);
    if (s != MST_OK) return s;
    int64_t n = mst_st_numel(t);
    float *dst = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!dst) return mst_fail(err, MST_ERR_NOMEM, "out of memory reading \"%s\"", name);
    convert(t, st->data + t->begin, n, dst);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(dst[i])) {
            double bad = dst[i];
            free(dst);
            return mst_fail(err, MST_ERR_VALUE, "%s: tensor \"%s\" has a non-finite value (%g) at index %lld",
                            st->path, name, bad, (long long)i);
        }
    }
    st->used[t - st->tensors] = 1;
    *out = dst;
    return MST_OK;
}
