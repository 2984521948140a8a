/* torch.save checkpoints (.pth, torch >= 1.6) into the tensor table the
 * safetensors reader fills, so that everything after loading is one path:
 * the zip container (zip.c), data.pkl through the unpickler (pickle.c), then
 * the state_dict's tensors copied out contiguous. */
#include "pth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "pickle.h"
#include "zip.h"

#define MAX_KEY 255

typedef struct {
    const mst_zip *zip;
    const char *path;
    char prefix[256];        /* the archive folder, with its '/' */
    unsigned char *verified; /* [num_entries]: CRC-32 checked */
} archive;

static mst_status verify(archive *a, const mst_zip_entry *e, mst_error *err)
{
    size_t i = (size_t)(e - a->zip->entries);
    mst_status s = a->verified[i] ? MST_OK : mst_zip_verify(e, a->path, err);
    a->verified[i] = s == MST_OK;
    return s;
}

/* The storage record's key names the entry <prefix>data/<key>, which holds
 * exactly numel elements. */
static mst_status resolve_storage(void *ctx, mst_pk_storage *st, mst_error *err)
{
    archive *a = ctx;
    char name[512];
    snprintf(name, sizeof name, "%sdata/%s", a->prefix, st->key);
    const mst_zip_entry *e = mst_zip_find(a->zip, name);
    if (!e) return mst_fail(err, MST_ERR_FORMAT, "%s: storage \"%s\" has no entry %s in the archive", a->path, st->key, name);
    if (e->size != (uint64_t)st->numel * (uint64_t)st->elem_size)
        return mst_fail(err, MST_ERR_FORMAT, "%s: storage \"%s\" of %lld %s elements needs %llu bytes, its entry holds %llu",
                        a->path, st->key, (long long)st->numel, st->dtype,
                        (unsigned long long)st->numel * (unsigned long long)st->elem_size, (unsigned long long)e->size);
    st->data = e->data;
    return verify(a, e, err);
}

/* The one "<folder>/data.pkl" of the archive names its folder. */
static mst_status find_prefix(archive *a, const mst_zip_entry **pkl, mst_error *err)
{
    *pkl = NULL;
    for (int i = 0; i < a->zip->num_entries; i++) {
        const char *n = a->zip->entries[i].name, *slash = strchr(n, '/');
        if (!slash || strcmp(slash, "/data.pkl") || slash - n >= (int)sizeof a->prefix - 1) continue;
        if (*pkl) return mst_fail(err, MST_ERR_FORMAT, "%s: two data.pkl entries (%s and %s)", a->path, (*pkl)->name, n);
        *pkl = &a->zip->entries[i];
        snprintf(a->prefix, sizeof a->prefix, "%.*s/", (int)(slash - n), n);
    }
    if (!*pkl)
        return mst_fail(err, MST_ERR_FORMAT, "%s: a zip file without <folder>/data.pkl: not a torch.save checkpoint", a->path);
    return MST_OK;
}

/* torch >= 2.1 records the writer's byte order; older files are little-endian. */
static mst_status check_byteorder(archive *a, mst_error *err)
{
    char name[300];
    snprintf(name, sizeof name, "%sbyteorder", a->prefix);
    const mst_zip_entry *e = mst_zip_find(a->zip, name);
    mst_status s = e ? verify(a, e, err) : MST_OK;
    if (s != MST_OK) return s;
    if (!e || (e->size == 6 && !memcmp(e->data, "little", 6))) return MST_OK;
    if (e->size == 3 && !memcmp(e->data, "big", 3))
        return mst_fail(err, MST_ERR_UNSUPPORTED, "%s: a big-endian checkpoint (byteorder \"big\"); mst reads little-endian ones",
                        a->path);
    return mst_fail(err, MST_ERR_FORMAT, "%s: byteorder entry is neither \"little\" nor \"big\"", a->path);
}

static mst_status not_tensor(const char *path, const char *key, const mst_pk_value *v, mst_error *err)
{
    char what[200];
    mst_pk_describe(v, what, sizeof what);
    return mst_fail(err, MST_ERR_FORMAT, "%s: state_dict entry \"%s\" is %s, not a tensor", path, key, what);
}

/* A bare state_dict, or a training checkpoint whose "model" is one; the
 * optimizer, scheduler and config beside it are passed over unread. */
static mst_status state_dict(const mst_pk_value *root, const char *path, const mst_pk_value **sd, mst_error *err)
{
    char what[200];
    if (root->kind != MST_PK_DICT) {
        mst_pk_describe(root, what, sizeof what);
        return mst_fail(err, MST_ERR_FORMAT, "%s: data.pkl holds %s, not a state_dict or a checkpoint dict", path, what);
    }
    const mst_pk_value *model = mst_pk_dict_get(root, "model");
    *sd = model ? model : root;
    if (model && model->kind != MST_PK_DICT) {
        mst_pk_describe(model, what, sizeof what);
        return mst_fail(err, MST_ERR_FORMAT, "%s: the checkpoint's \"model\" is %s, not a state_dict", path, what);
    }
    return MST_OK;
}

static mst_status key_of(const mst_pk_value *k, const char *path, size_t i, char **out, mst_error *err)
{
    if (k->kind != MST_PK_STR || k->len == 0 || k->len > MAX_KEY || memchr(k->s, 0, k->len))
        return mst_fail(err, MST_ERR_FORMAT, "%s: state_dict key %zu is not a name (a string of 1 to %d bytes)", path, i, MAX_KEY);
    size_t skip = k->len > 7 && !memcmp(k->s, "module.", 7) ? 7 : 0; /* nn.DataParallel's prefix */
    *out = strndup(k->s + skip, k->len - skip);
    return *out ? MST_OK : mst_fail(err, MST_ERR_NOMEM, "out of memory");
}

static int64_t numel_of(const mst_pk_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->size[i];
    return n;
}

/* Row-major copy of a strided view (a transposed or sliced tensor). */
static int contiguous(const mst_pk_tensor *t)
{
    int64_t want = 1;
    for (int d = t->ndim - 1; d >= 0; want *= t->size[d--])
        if (t->size[d] != 1 && t->stride[d] != want) return 0;
    return 1;
}

static void gather(const mst_pk_tensor *t, uint8_t *dst)
{
    const mst_pk_storage *st = t->storage->storage;
    size_t es = (size_t)st->elem_size;
    int64_t n = numel_of(t), idx[MST_PK_MAX_DIMS] = {0};
    if (contiguous(t)) {
        if (n) memcpy(dst, st->data + (size_t)t->offset * es, (size_t)n * es);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t at = t->offset;
        for (int d = 0; d < t->ndim; d++) at += idx[d] * t->stride[d];
        memcpy(dst + (size_t)i * es, st->data + (size_t)at * es, es);
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->size[d]; d--) idx[d] = 0;
    }
}

static mst_status describe_tensor(const char *path, const mst_pk_value *v, mst_st_tensor *t, uint64_t *bytes, mst_error *err)
{
    if (v->kind != MST_PK_TENSOR) return not_tensor(path, t->name, v, err);
    const mst_pk_tensor *pt = v->tensor;
    const mst_pk_storage *st = pt->storage->storage;
    if (!st->elem_size)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "%s: tensor \"%s\" is stored as %s, which mst does not read", path, t->name,
                        st->type_name);
    if (numel_of(pt) > st->numel)
        return mst_fail(err, MST_ERR_FORMAT, "%s: tensor \"%s\" has %lld elements, more than its storage's %lld (an expanded view)",
                        path, t->name, (long long)numel_of(pt), (long long)st->numel);
    snprintf(t->dtype, sizeof t->dtype, "%s", st->dtype);
    t->ndim = pt->ndim;
    if (!(t->shape = calloc((size_t)pt->ndim + 1, sizeof *t->shape))) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    memcpy(t->shape, pt->size, sizeof *t->shape * (size_t)pt->ndim);
    *bytes = (uint64_t)numel_of(pt) * (uint64_t)st->elem_size;
    return MST_OK;
}

/* The state_dict's entries, in its order, as a tensor table over one buffer. */
static mst_status build_table(const mst_pk_value *sd, size_t file_size, mst_pth_storage_fn storage, void *ctx,
                              mst_safetensors *st, mst_error *err)
{
    size_t n = sd->n / 2;
    uint64_t total = 0, *bytes = calloc(n + 1, sizeof *bytes);
    st->tensors = calloc(n + 1, sizeof *st->tensors);
    if (!bytes || !st->tensors) {
        free(bytes);
        return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    }
    mst_status s = MST_OK;
    for (size_t i = 0; s == MST_OK && i < n; i++) {
        mst_st_tensor *t = &st->tensors[st->num_tensors++];
        s = key_of(sd->items[2 * i], st->path, i, &t->name, err);
        if (s == MST_OK) s = describe_tensor(st->path, sd->items[2 * i + 1], t, &bytes[i], err);
        if (s == MST_OK) s = storage(ctx, sd->items[2 * i + 1]->tensor->storage->storage, err);
        total += bytes[i];
    }
    /* Views may share a storage, but a file cannot make us copy much more
     * than it holds. */
    if (s == MST_OK && total > 2 * (uint64_t)file_size + 65536)
        s = mst_fail(err, MST_ERR_FORMAT, "%s: the state_dict's tensors hold %llu bytes, more than twice the file's %zu "
                     "(the same storage viewed over and over)", st->path, (unsigned long long)total, file_size);
    if (s == MST_OK && !(st->owned = malloc(total ? total : 1))) s = mst_fail(err, MST_ERR_NOMEM, "out of memory copying tensors");
    for (size_t i = 0, at = 0; s == MST_OK && i < n; at += bytes[i++]) {
        st->tensors[i].begin = at;
        st->tensors[i].end = at + bytes[i];
        gather(sd->items[2 * i + 1]->tensor, st->owned + at);
    }
    st->data = st->owned;
    st->data_size = total;
    free(bytes);
    return s;
}

static int legacy(const uint8_t *buf, size_t size)
{
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    return (size >= sizeof magic && !memcmp(buf, magic, sizeof magic)) || (size > 262 && !memcmp(buf + 257, "ustar", 5));
}

int mst_pth_sniff(const uint8_t *buf, size_t size)
{
    return (size >= 4 && !memcmp(buf, "PK\x03\x04", 4)) || (size >= 4 && !memcmp(buf, "PK\x05\x06", 4)) || legacy(buf, size);
}

mst_status mst_pth_state_dict(const uint8_t *pkl, size_t n, const char *what, mst_pth_storage_fn storage, void *ctx,
                              size_t file_size, mst_safetensors *st, mst_error *err)
{
    mst_pickle *pk = NULL;
    const mst_pk_value *root = NULL, *sd = NULL;
    mst_status s = mst_pickle_load(pkl, n, what, &pk, &root, err);
    if (s == MST_OK) s = state_dict(root, st->path, &sd, err);
    if (s == MST_OK) s = build_table(sd, file_size, storage, ctx, st, err);
    if (s == MST_OK) s = mst_st_index(st, err);
    mst_pickle_free(pk);
    return s;
}

mst_status mst_pth_parse(const uint8_t *buf, size_t size, mst_safetensors *st, mst_error *err)
{
    if (legacy(buf, size))
        return mst_fail(err, MST_ERR_UNSUPPORTED,
                        "%s: a torch.save file in the legacy format (torch < 1.6): load it and torch.save it again with "
                        "a newer torch, or convert it with tools/convert_pth.py", st->path);
    mst_zip zip;
    const mst_zip_entry *pkl = NULL;
    archive a = {.zip = &zip, .path = st->path};
    mst_status s = mst_zip_open(buf, size, st->path, &zip, err);
    if (s != MST_OK) return s;
    if (!(a.verified = calloc((size_t)zip.num_entries + 1, 1))) s = mst_fail(err, MST_ERR_NOMEM, "out of memory");
    if (s == MST_OK) s = find_prefix(&a, &pkl, err);
    if (s == MST_OK) s = check_byteorder(&a, err);
    if (s == MST_OK) s = verify(&a, pkl, err);
    if (s == MST_OK) {
        char what[300];
        snprintf(what, sizeof what, "%s: %s", st->path, pkl->name);
        s = mst_pth_state_dict(pkl->data, pkl->size, what, resolve_storage, &a, size, st, err);
    }
    free(a.verified);
    mst_zip_close(&zip);
    return s;
}

mst_status mst_pth_open(const char *path, mst_safetensors *st, mst_error *err)
{
    memset(st, 0, sizeof *st);
    if (!(st->path = strdup(path))) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    mst_status s = mst_st_map(path, st, err);
    return s == MST_OK ? mst_pth_parse(st->map, st->map_size, st, err) : s;
}
