/* IDX files (the MNIST family's format), gzip-compressed or not. */
#ifndef MST_IDX_H
#define MST_IDX_H

#include <stdint.h>

#include "mst/mst.h"

typedef struct {
    int ndim;
    long dims[4];
    uint8_t *data; /* unsigned bytes, C order */
} mst_idx;

/* Reads an unsigned-byte IDX file of 1 to 4 dimensions; the data must fill
 * the dimensions exactly. */
mst_status mst_idx_read(const char *path, mst_idx *out, mst_error *err);
long mst_idx_count(const mst_idx *a);
void mst_idx_free(mst_idx *a);

#endif
