/* The devkit's flat validation layout and --labels: the fuzzer's bytes are
 * the ground-truth file, the synset table, the image file names (one per
 * line) and a class-names file, separated by NULs. The names label a flat
 * folder as mst_dataset_open would have listed it. */
#include "fuzz_file.h" /* first: it asks for _GNU_SOURCE (memfd_create) */

#include <string.h>

#include "host/data/dataset.h"

enum { MAX_FILES = 256 };

/* The next NUL-separated part of [*p, end), its length in *n. */
static const uint8_t *part(const uint8_t **p, const uint8_t *end, size_t *n)
{
    const uint8_t *s = *p, *z = s < end ? memchr(s, 0, (size_t)(end - s)) : NULL;
    *n = (size_t)((z ? z : end) - s);
    *p = z ? z + 1 : end;
    return s;
}

/* The file names, one per line, as a flat folder's images. */
static void flat_folder(const uint8_t *s, size_t n, mst_dataset *d)
{
    *d = (mst_dataset){.files = calloc(MAX_FILES, sizeof(char *)), .labels = calloc(MAX_FILES, sizeof(int))};
    if (!d->files || !d->labels) abort();
    for (size_t i = 0; i < n && d->count < MAX_FILES;) {
        const uint8_t *nl = memchr(s + i, '\n', n - i);
        size_t len = (size_t)((nl ? nl : s + n) - (s + i));
        if (!(d->files[d->count] = strndup((const char *)s + i, len))) abort();
        d->labels[d->count++] = -1;
        i += len + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    size_t n[4];
    const uint8_t *s[4];
    for (int i = 0; i < 4; i++) s[i] = part(&p, end, &n[i]);
    char gt[64], syn[64], labels[64];
    int fg = fuzz_file(s[0], n[0], gt, sizeof gt), fs = fuzz_file(s[1], n[1], syn, sizeof syn),
        fl = fuzz_file(s[3], n[3], labels, sizeof labels);
    mst_dataset d;
    flat_folder(s[2], n[2], &d);
    mst_error err;
    int K = 3;
    if (mst_dataset_label_devkit(&d, gt, syn, &err) == MST_OK) {
        for (long i = 0; i < d.count; i++)
            if (d.labels[i] < 0 || d.labels[i] >= d.num_classes) abort(); /* every image labelled, in range */
        K = d.num_classes;
    }
    char **names;
    if (mst_dataset_class_names(labels, K, &names, &err) == MST_OK) mst_dataset_free_names(names, K);
    mst_dataset_close(&d);
    close(fg), close(fs), close(fl);
    return 0;
}
