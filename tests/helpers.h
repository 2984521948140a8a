/* Shared test helpers: temporary files and safetensors files built by hand. */
#ifndef MST_TEST_HELPERS_H
#define MST_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mst/mst.h"

#define DATA(name) MST_TEST_DATA "/" name

/* A fresh path under $TMPDIR for this test process. */
static inline const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int i;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = buf[i++ % 8];
    snprintf(p, 512, "%s/mst-test-%d-%s", dir, (int)getpid(), name);
    return p;
}

/* Writes u64 header length (or `len_override` when nonzero), header, data. */
static inline void write_raw_st(const char *path, const char *header, const void *data, size_t n,
                                unsigned long long len_override)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot create %s", path);
    unsigned long long len = len_override ? len_override : strlen(header);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* Packs rows of 0/1 floats the way spike tensors travel between layers. */
static inline uint64_t *pack_spikes(const float *x, long rows, int C)
{
    int W = (C + 63) / 64;
    uint64_t *p = calloc((size_t)(rows * W) + 1, sizeof(uint64_t));
    for (long r = 0; r < rows; r++)
        for (int c = 0; c < C; c++)
            if (x[r * C + c] != 0.0f) p[r * W + c / 64] |= (uint64_t)1 << (c % 64);
    return p;
}

static inline int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* One window-attention call: the shape the attention tests run on every backend. */
typedef struct {
    int batch, res, w, shift, dim, heads, steps, t0;
    mst_mode mode;
    double ratio;
} attn_case;

#endif
