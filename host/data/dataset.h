/* Labelled image sets for evaluation. Today: IDX files (MNIST family). */
#ifndef MST_DATASET_H
#define MST_DATASET_H

#include <stdint.h>

#include "mst/mst.h"

typedef struct {
    long count;
    int height, width, channels;
    uint8_t *pixels; /* [count][height][width][channels] */
    int *labels;     /* [count] */
} mst_dataset;

/* path: an IDX images file (its labels file is the same name with
 * "images-idx3" -> "labels-idx1"), or a folder holding t10k-images-idx3-ubyte
 * (or train-images-idx3-ubyte), gzip or not. */
mst_status mst_dataset_open(const char *path, mst_dataset *d, mst_error *err);
void mst_dataset_close(mst_dataset *d);

#endif
