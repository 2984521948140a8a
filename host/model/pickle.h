/* An unpickler that executes nothing: the pickle opcodes torch.save writes
 * (protocol 2 and later) build a tree of values. The few globals a
 * checkpoint needs are understood (an OrderedDict, a tensor rebuilt from a
 * storage, a Parameter, the storage types); any other global, and anything
 * built by calling it, becomes an opaque value that remembers its name, so
 * that a reader that needs it can say which global stood in the way. */
#ifndef MST_PICKLE_H
#define MST_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "mst/mst.h"

#define MST_PK_MAX_DIMS 8

typedef enum {
    MST_PK_NONE,
    MST_PK_BOOL,
    MST_PK_INT,
    MST_PK_BIGINT, /* an integer wider than 64 bits: kept, never read */
    MST_PK_FLOAT,
    MST_PK_STR,
    MST_PK_BYTES,
    MST_PK_TUPLE,
    MST_PK_LIST,
    MST_PK_SET,
    MST_PK_DICT,
    MST_PK_GLOBAL,  /* a module.name reference, not called */
    MST_PK_OPAQUE,  /* built by calling a global mst does not know */
    MST_PK_STORAGE, /* a persistent id: ('storage', type, key, location, numel) */
    MST_PK_TENSOR
} mst_pk_kind;

typedef struct mst_pk_value mst_pk_value;

typedef struct {
    char dtype[8]; /* safetensors' names: F32, F16, BF16, F64, I64, ...; "" unknown */
    int elem_size;
    const char *type_name; /* the storage global, for errors */
    const char *key;       /* the archive's data/<key> entry */
    int64_t numel;
    const uint8_t *data; /* NULL until a reader resolves it */
} mst_pk_storage;

typedef struct {
    const mst_pk_value *storage;
    int64_t offset;
    int ndim;
    int64_t size[MST_PK_MAX_DIMS], stride[MST_PK_MAX_DIMS];
} mst_pk_tensor;

struct mst_pk_value {
    mst_pk_kind kind;
    int64_t i;                /* BOOL, INT */
    double f;                 /* FLOAT */
    const char *s;            /* STR, BYTES (len bytes); GLOBAL and OPAQUE: "module.name" */
    size_t len;
    mst_pk_value **items;     /* TUPLE, LIST, SET; DICT: keys and values alternating */
    size_t n, cap;
    mst_pk_storage *storage;  /* STORAGE */
    mst_pk_tensor *tensor;    /* TENSOR */
};

typedef struct mst_pickle mst_pickle;

/* Unpickles buf[0, size). `what` names the stream in errors. On success
 * *root is the value STOP returned; it lives until mst_pickle_free, which
 * the caller runs whatever the outcome. Storages are left unresolved
 * (data NULL). */
mst_status mst_pickle_load(const uint8_t *buf, size_t size, const char *what, mst_pickle **pk, const mst_pk_value **root,
                           mst_error *err);
void mst_pickle_free(mst_pickle *pk);

/* dict[key] for a string key (the last one, as Python keeps), or NULL. */
const mst_pk_value *mst_pk_dict_get(const mst_pk_value *dict, const char *key);
/* "a dict", "an opaque value built by posix.system", ...: for errors. */
void mst_pk_describe(const mst_pk_value *v, char *buf, size_t n);

#endif
