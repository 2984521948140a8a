#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.h"
#include "idx.h"

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The images file inside a folder: the test split first. */
static mst_status find_images(const char *dir, char *out, size_t n, mst_error *err)
{
    static const char *names[] = {"t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                                  "train-images-idx3-ubyte"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(out, n, "%s/%s", dir, names[i]);
        if (access(out, R_OK) == 0) return MST_OK;
    }
    return mst_fail(err, MST_ERR_IO, "%s: no t10k- or train-images-idx3-ubyte[.gz] in this folder", dir);
}

static mst_status labels_path(const char *images, char *out, size_t n, mst_error *err)
{
    const char *at = strstr(images, "images-idx3");
    if (!at) return mst_fail(err, MST_ERR_ARG, "%s: cannot tell the labels file (no \"images-idx3\" in the name)", images);
    snprintf(out, n, "%.*slabels-idx1%s", (int)(at - images), images, at + strlen("images-idx3"));
    return MST_OK;
}

static mst_status from_idx(const char *ipath, const char *lpath, mst_dataset *d, mst_error *err)
{
    mst_idx img = {0}, lab = {0};
    mst_status r = mst_idx_read(ipath, &img, err);
    if (r == MST_OK) r = mst_idx_read(lpath, &lab, err);
    if (r == MST_OK && (img.ndim != 3 && img.ndim != 4))
        r = mst_fail(err, MST_ERR_SHAPE, "%s: images must be [N, H, W] or [N, H, W, C], not %d-D", ipath, img.ndim);
    if (r == MST_OK && (lab.ndim != 1 || lab.dims[0] != img.dims[0]))
        r = mst_fail(err, MST_ERR_SHAPE, "%s: %ld labels for %ld images", lpath, lab.ndim == 1 ? lab.dims[0] : -1L,
                     img.dims[0]);
    if (r == MST_OK && !(d->labels = malloc(sizeof(int) * (size_t)(img.dims[0] + 1))))
        r = mst_fail(err, MST_ERR_NOMEM, "out of memory");
    if (r == MST_OK) {
        d->count = img.dims[0];
        d->height = (int)img.dims[1];
        d->width = (int)img.dims[2];
        d->channels = img.ndim == 4 ? (int)img.dims[3] : 1;
        d->pixels = img.data;
        img.data = NULL;
        for (long i = 0; i < d->count; i++) d->labels[i] = lab.data[i];
    }
    mst_idx_free(&img);
    mst_idx_free(&lab);
    return r;
}

mst_status mst_dataset_open(const char *path, mst_dataset *d, mst_error *err)
{
    memset(d, 0, sizeof *d);
    char images[4096], labels[4096];
    mst_status r = MST_OK;
    if (is_dir(path))
        r = find_images(path, images, sizeof images, err);
    else
        snprintf(images, sizeof images, "%s", path);
    if (r == MST_OK) r = labels_path(images, labels, sizeof labels, err);
    if (r == MST_OK) r = from_idx(images, labels, d, err);
    if (r != MST_OK) mst_dataset_close(d);
    return r;
}

void mst_dataset_close(mst_dataset *d)
{
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
