/* NumPy .npy files of little-endian float32, C order (format versions 1-3). */
#ifndef MST_NPY_H
#define MST_NPY_H

#include "mst/mst.h"

typedef struct {
    int ndim;
    long shape[8];
    float *data;
} mst_npy;

mst_status mst_npy_read(const char *path, mst_npy *out, mst_error *err);
mst_status mst_npy_write(const char *path, const float *data, int ndim, const long *shape, mst_error *err);
long mst_npy_numel(const mst_npy *a);
void mst_npy_free(mst_npy *a);

#endif
