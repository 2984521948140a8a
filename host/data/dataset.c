#include "dataset.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.h"
#include "idx.h"

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int image_name(const char *n)
{
    const char *dot = strrchr(n, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Sorted entries of a folder that are subfolders (want_dirs) or image files. */
static mst_status list_dir(const char *dir, int want_dirs, char ***out, int *n, mst_error *err)
{
    DIR *dp = opendir(dir);
    if (!dp) return mst_fail(err, MST_ERR_IO, "%s: cannot open folder", dir);
    int cap = 16;
    *n = 0;
    *out = malloc(sizeof(char *) * (size_t)cap);
    for (struct dirent *de; *out && (de = readdir(dp));) {
        if (de->d_name[0] == '.') continue;
        char full[4400];
        snprintf(full, sizeof full, "%.4000s/%.256s", dir, de->d_name);
        if (want_dirs ? !is_dir(full) : (is_dir(full) || !image_name(de->d_name))) continue;
        if (*n == cap) *out = realloc(*out, sizeof(char *) * (size_t)(cap *= 2));
        if (*out) (*out)[(*n)++] = strdup(de->d_name);
    }
    closedir(dp);
    if (!*out) return mst_fail(err, MST_ERR_NOMEM, "out of memory listing %s", dir);
    qsort(*out, (size_t)*n, sizeof(char *), by_name);
    return MST_OK;
}

static void free_list(char **list, int n)
{
    for (int i = 0; list && i < n; i++) free(list[i]);
    free(list);
}

static mst_status add_file(mst_dataset *d, long *cap, const char *path, int label, mst_error *err)
{
    if (d->count == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        char **f = realloc(d->files, sizeof(char *) * (size_t)*cap);
        int *l = f ? realloc(d->labels, sizeof(int) * (size_t)*cap) : NULL;
        if (f) d->files = f;
        if (l) d->labels = l;
        if (!f || !l) return mst_fail(err, MST_ERR_NOMEM, "out of memory listing %s", path);
    }
    if (!(d->files[d->count] = strdup(path))) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    d->labels[d->count++] = label;
    return MST_OK;
}

/* Image files directly in a folder: an unlabelled set (labels -1). */
static mst_status from_flat_folder(const char *dir, mst_dataset *d, mst_error *err)
{
    char **names = NULL;
    int n = 0;
    long cap = 0;
    mst_status r = list_dir(dir, 0, &names, &n, err);
    if (r == MST_OK && n == 0) r = mst_fail(err, MST_ERR_FORMAT, "%s: no class subfolders and no .png or .jpg files", dir);
    for (int i = 0; r == MST_OK && i < n; i++) {
        char full[4400];
        snprintf(full, sizeof full, "%.4000s/%.256s", dir, names[i]);
        r = add_file(d, &cap, full, -1, err);
    }
    free_list(names, n);
    return r;
}

/* One subfolder per class; label = the class's position in sorted order. */
static mst_status from_folders(const char *dir, mst_dataset *d, mst_error *err)
{
    mst_status r = list_dir(dir, 1, &d->classes, &d->num_classes, err);
    if (r == MST_OK && d->num_classes == 0) return from_flat_folder(dir, d, err);
    long cap = 0;
    for (int c = 0; r == MST_OK && c < d->num_classes; c++) {
        char sub[4400], **names = NULL;
        int n = 0;
        snprintf(sub, sizeof sub, "%.4000s/%.256s", dir, d->classes[c]);
        r = list_dir(sub, 0, &names, &n, err);
        for (int i = 0; r == MST_OK && i < n; i++) {
            char full[8800];
            snprintf(full, sizeof full, "%.4400s/%.256s", sub, names[i]);
            r = add_file(d, &cap, full, c, err);
        }
        if (names) free_list(names, n);
    }
    if (r == MST_OK && d->count == 0) r = mst_fail(err, MST_ERR_FORMAT, "%s: no .png or .jpg files in the class folders", dir);
    return r;
}

/* A folder of IDX files, or of class folders. */
static int holds_idx(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    if (access(p, R_OK) == 0) return 1;
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    if (access(p, R_OK) == 0) return 1;
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    if (access(p, R_OK) == 0) return 1;
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
    return access(p, R_OK) == 0;
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
    if (!is_dir(path) && image_name(path)) { /* one image file: unlabelled */
        long cap = 0;
        r = add_file(d, &cap, path, -1, err);
        if (r != MST_OK) mst_dataset_close(d);
        return r;
    }
    if (is_dir(path) && !holds_idx(path)) {
        r = from_folders(path, d, err);
        if (r != MST_OK) mst_dataset_close(d);
        return r;
    }
    if (is_dir(path))
        r = find_images(path, images, sizeof images, err);
    else
        snprintf(images, sizeof images, "%s", path);
    if (r == MST_OK) r = labels_path(images, labels, sizeof labels, err);
    if (r == MST_OK) r = from_idx(images, labels, d, err);
    if (r != MST_OK) mst_dataset_close(d);
    return r;
}

/* One line of f into buf, without its newline: 1, 0 at the end of the
 * file, -1 for a line longer than buf holds (it would otherwise be read as
 * two lines, and every line after it would be off by one). */
static int read_line(FILE *f, char *buf, size_t n)
{
    if (!fgets(buf, (int)n, f)) return 0;
    size_t len = strlen(buf);
    if (len == n - 1 && buf[len - 1] != '\n' && !feof(f)) return -1;
    return 1;
}

/* buf without its surrounding blanks and line end, in place. */
static char *trim(char *buf)
{
    char *a = buf, *b = buf + strlen(buf);
    while (*a == ' ' || *a == '\t') a++;
    while (b > a && (b[-1] == '\n' || b[-1] == '\r' || b[-1] == ' ' || b[-1] == '\t')) *--b = 0;
    return a;
}

/* Lines of a text file, without their newlines and surrounding blanks;
 * blank lines at the end are dropped. */
static mst_status read_lines(const char *path, char ***out, int *n, mst_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return mst_fail(err, MST_ERR_IO, "%s: cannot open", path);
    int cap = 0, got;
    char line[4096];
    mst_status r = MST_OK;
    *n = 0, *out = NULL;
    while (r == MST_OK && (got = read_line(f, line, sizeof line)) != 0) {
        if (got < 0) r = mst_fail(err, MST_ERR_FORMAT, "%s line %d: longer than %zu bytes", path, *n + 1, sizeof line - 2);
        if (r == MST_OK && *n == cap) {
            char **grown = cap < (1 << 28) ? realloc(*out, sizeof(char *) * (size_t)(cap = cap ? 2 * cap : 1024)) : NULL;
            if (grown) *out = grown;
            else r = mst_fail(err, MST_ERR_NOMEM, "out of memory reading %s", path);
        }
        if (r == MST_OK && !((*out)[*n] = strdup(trim(line)))) r = mst_fail(err, MST_ERR_NOMEM, "out of memory reading %s", path);
        if (r == MST_OK) ++*n;
    }
    fclose(f);
    while (r == MST_OK && *n > 0 && !*(*out)[*n - 1]) free((*out)[--*n]);
    if (r != MST_OK) free_list(*out, *n), *out = NULL, *n = 0;
    return r;
}

mst_status mst_dataset_class_names(const char *path, int K, char ***names, mst_error *err)
{
    int n = 0;
    mst_status r = read_lines(path, names, &n, err);
    if (r == MST_OK && n != K) {
        r = mst_fail(err, MST_ERR_FORMAT, "%s: %s lines; the model has %d classes", path, n > K ? "more" : "fewer", K);
        free_list(*names, n);
        *names = NULL;
    }
    return r;
}

void mst_dataset_free_names(char **names, int K) { free_list(names, K); }

/* The validation number in a devkit file name: its last run of digits
 * (ILSVRC2012_val_00000123.JPEG -> 123), or -1. */
static long image_number(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    long v = -1;
    for (const char *p = base; *p; p++) {
        if (*p < '0' || *p > '9') continue;
        v = strtol(p, (char **)&p, 10);
        if (!*p) break;
    }
    return v;
}

mst_status mst_dataset_label_devkit(mst_dataset *d, const char *ground_truth, const char *synsets, mst_error *err)
{
    char **gt = NULL, **wnid = NULL, **sorted = NULL;
    int ngt = 0, nsyn = 0;
    mst_status r = d->files && d->num_classes == 0
                       ? MST_OK
                       : mst_fail(err, MST_ERR_ARG, "a ground-truth file labels a flat folder of images, not class folders or IDX files");
    if (r == MST_OK) r = read_lines(ground_truth, &gt, &ngt, err);
    if (r == MST_OK) r = read_lines(synsets, &wnid, &nsyn, err);
    if (r == MST_OK && nsyn == 0) r = mst_fail(err, MST_ERR_FORMAT, "%s: no synsets", synsets);
    /* the class index is the synset's position in sorted order */
    if (r == MST_OK && !(sorted = malloc(sizeof(char *) * (size_t)nsyn))) r = mst_fail(err, MST_ERR_NOMEM, "out of memory");
    if (r == MST_OK) {
        memcpy(sorted, wnid, sizeof(char *) * (size_t)nsyn);
        qsort(sorted, (size_t)nsyn, sizeof(char *), by_name);
    }
    for (int i = 1; r == MST_OK && i < nsyn; i++)
        if (!strcmp(sorted[i], sorted[i - 1])) r = mst_fail(err, MST_ERR_FORMAT, "%s: synset %s is listed twice", synsets, sorted[i]);
    for (long i = 0; r == MST_OK && i < d->count; i++) {
        long k = image_number(d->files[i]);
        if (k < 1 || k > ngt) {
            r = mst_fail(err, MST_ERR_FORMAT, "%s: no line %ld in %s (%d lines)", d->files[i], k, ground_truth, ngt);
            break;
        }
        char *end;
        long id = strtol(gt[k - 1], &end, 10);
        if (end == gt[k - 1] || *end || id < 1 || id > nsyn) {
            r = mst_fail(err, MST_ERR_FORMAT, "%s line %ld: \"%s\" is not an ILSVRC2012_ID in 1..%d", ground_truth, k,
                         gt[k - 1], nsyn);
            break;
        }
        char **at = bsearch(&wnid[id - 1], sorted, (size_t)nsyn, sizeof(char *), by_name);
        d->labels[i] = (int)(at - sorted);
    }
    if (r == MST_OK) {
        free_list(d->classes, d->num_classes);
        d->classes = malloc(sizeof(char *) * (size_t)nsyn);
        for (int i = 0; d->classes && i < nsyn; i++) d->classes[i] = strdup(sorted[i]);
        d->num_classes = d->classes ? nsyn : 0;
    }
    free(sorted);
    free_list(gt, ngt);
    free_list(wnid, nsyn);
    return r;
}

void mst_dataset_close(mst_dataset *d)
{
    free(d->pixels);
    free(d->labels);
    free_list(d->files, (int)d->count);
    free_list(d->classes, d->num_classes);
    memset(d, 0, sizeof *d);
}

const char *mst_dataset_file(const mst_dataset *d, long i) { return d->files ? d->files[i] : NULL; }

mst_status mst_dataset_image(const mst_dataset *d, long i, mst_image *out, mst_error *err)
{
    if (d->files) return mst_image_read(d->files[i], out, err);
    size_t n = (size_t)d->height * d->width * d->channels;
    *out = (mst_image){.height = d->height, .width = d->width, .channels = d->channels, .pixels = malloc(n)};
    if (!out->pixels) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    memcpy(out->pixels, d->pixels + (size_t)i * n, n);
    return MST_OK;
}
