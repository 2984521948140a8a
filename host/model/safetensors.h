/* A validating safetensors reader (https://github.com/huggingface/safetensors
 * format: u64 header length, JSON header, contiguous tensor data). */
#ifndef MST_SAFETENSORS_H
#define MST_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "mst/mst.h"

typedef struct {
    char *name;
    char dtype[8];
    int ndim;
    int64_t *shape;
    size_t begin, end; /* byte offsets inside the data section */
} mst_st_tensor;

typedef struct mst_safetensors {
    char *path;
    const uint8_t *map;
    size_t map_size;
    const uint8_t *data; /* start of the data section */
    uint8_t *owned;      /* the data section when it is not the file's (.pth) */
    size_t data_size;
    mst_st_tensor *tensors;
    int num_tensors;
    const mst_st_tensor **by_name; /* sorted, for lookups */
    unsigned char *used;           /* [num_tensors]: read by mst_st_read_f32 */
    char **meta_keys, **meta_values;
    int num_meta;
} mst_safetensors;

mst_status mst_st_open(const char *path, mst_safetensors *st, mst_error *err);
/* Maps a regular, non-empty file read-only into st->map, st->map_size
 * (unmapped by mst_st_close). */
mst_status mst_st_map(const char *path, mst_safetensors *st, mst_error *err);
void mst_st_close(mst_safetensors *st);
/* Builds the name index of st->tensors; refuses a name that appears twice. */
mst_status mst_st_index(mst_safetensors *st, mst_error *err);

const mst_st_tensor *mst_st_find(const mst_safetensors *st, const char *name);
const char *mst_st_meta(const mst_safetensors *st, const char *key);
int64_t mst_st_numel(const mst_st_tensor *t);
/* Bytes per element of a safetensors dtype ("F32", "I64", ...); 0: unknown. */
int mst_st_dtype_size(const char *dtype);

/* Converts tensor `name` (F32, F16, BF16 or F64) to a new float32 array. When
 * ndim >= 0 the tensor must have that rank and, for every shape[i] >= 0, that
 * extent. Rejects NaN and infinite values. */
mst_status mst_st_read_f32(const mst_safetensors *st, const char *name, int ndim,
                           const int64_t *shape, float **out, mst_error *err);

#endif
