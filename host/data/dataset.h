/* Labelled image sets for evaluation: IDX files (MNIST family), or a folder
 * with one subfolder of PNG/JPEG files per class. */
#ifndef MST_DATASET_H
#define MST_DATASET_H

#include <stdint.h>

#include "image.h"
#include "mst/mst.h"

typedef struct {
    long count;
    int *labels;       /* [count] */
    /* IDX: every image in memory */
    int height, width, channels;
    uint8_t *pixels;   /* [count][height][width][channels] */
    /* folder: files decoded when asked for */
    char **files;      /* [count] */
    char **classes;    /* [num_classes] subfolder names, sorted: label = position */
    int num_classes;
} mst_dataset;

/* path: an IDX images file (its labels file is the same name with
 * "images-idx3" -> "labels-idx1"), a folder holding t10k-images-idx3-ubyte
 * (or train-images-idx3-ubyte), gzip or not, or a folder of class
 * subfolders of .png/.jpg/.jpeg files (classes and files in sorted order).
 * A folder of image files without subfolders, or one image file, is an
 * unlabelled set (labels -1). */
mst_status mst_dataset_open(const char *path, mst_dataset *d, mst_error *err);
void mst_dataset_close(mst_dataset *d);

/* The devkit's flat validation layout: labels for a flat folder of images
 * from the ground-truth file (line k: the ILSVRC2012_ID of validation image
 * k, the number in its file name) and the synset table (line j: the WNID of
 * ILSVRC2012_ID j, tools/devkit_synsets.py writes it from meta.mat). The
 * class index is the WNID's position in sorted order (spec section 5). */
mst_status mst_dataset_label_devkit(mst_dataset *d, const char *ground_truth, const char *synsets, mst_error *err);

/* --labels: one class name per line, in class-index order (blanks around a
 * name and blank lines at the end ignored); exactly K lines, or an error. */
mst_status mst_dataset_class_names(const char *path, int K, char ***names, mst_error *err);
void mst_dataset_free_names(char **names, int K);

/* Image i (decoded from its file for folder sets). */
mst_status mst_dataset_image(const mst_dataset *d, long i, mst_image *out, mst_error *err);
/* The file of image i, or NULL for IDX sets. */
const char *mst_dataset_file(const mst_dataset *d, long i);

#endif
