#include "idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../error.h"

long mst_idx_count(const mst_idx *a)
{
    long n = 1;
    for (int i = 0; i < a->ndim; i++) n *= a->dims[i];
    return n;
}

void mst_idx_free(mst_idx *a)
{
    free(a->data);
    a->data = NULL;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static mst_status read_header(gzFile f, const char *path, mst_idx *out, mst_error *err)
{
    unsigned char h[4 + 16];
    if (gzread(f, h, 4) != 4) return mst_fail(err, MST_ERR_FORMAT, "%s: truncated IDX header", path);
    if (h[0] || h[1]) return mst_fail(err, MST_ERR_FORMAT, "%s: not an IDX file (bad magic)", path);
    if (h[2] != 0x08) return mst_fail(err, MST_ERR_UNSUPPORTED, "%s: IDX element type 0x%02x; only unsigned bytes (0x08)", path, h[2]);
    out->ndim = h[3];
    if (out->ndim < 1 || out->ndim > 4) return mst_fail(err, MST_ERR_FORMAT, "%s: IDX with %d dimensions", path, out->ndim);
    if (gzread(f, h + 4, (unsigned)(4 * out->ndim)) != 4 * out->ndim)
        return mst_fail(err, MST_ERR_FORMAT, "%s: truncated IDX header", path);
    long n = 1;
    for (int i = 0; i < out->ndim; i++) {
        out->dims[i] = (long)be32(h + 4 + 4 * i);
        if (__builtin_mul_overflow(n, out->dims[i], &n) || n > (1L << 40))
            return mst_fail(err, MST_ERR_FORMAT, "%s: IDX dimensions too large", path);
    }
    return MST_OK;
}

/* The buffer grows with the data that arrives, so that a header claiming
 * 2^40 bytes over a few bytes of gzip costs what the file holds, not what
 * it claims. */
static mst_status read_data(gzFile f, const char *path, long n, mst_idx *out, mst_error *err)
{
    long cap = 0, at = 0;
    while (at < n) {
        if (at == cap) {
            cap = cap ? (cap > n / 2 ? n : 2 * cap) : (n < (1L << 20) ? n : 1L << 20);
            uint8_t *p = realloc(out->data, (size_t)cap);
            if (!p) return mst_fail(err, MST_ERR_NOMEM, "out of memory reading %s", path);
            out->data = p;
        }
        unsigned chunk = cap - at > (1 << 30) ? (1u << 30) : (unsigned)(cap - at);
        int got = gzread(f, out->data + at, chunk);
        if (got <= 0)
            return mst_fail(err, MST_ERR_FORMAT, "%s: truncated: the dimensions need %ld bytes, the file holds %ld", path,
                            n, at);
        at += got;
    }
    return MST_OK;
}

mst_status mst_idx_read(const char *path, mst_idx *out, mst_error *err)
{
    memset(out, 0, sizeof *out);
    gzFile f = gzopen(path, "rb"); /* reads plain files too */
    if (!f) return mst_fail(err, MST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mst_status r = read_header(f, path, out, err);
    long n = r == MST_OK ? mst_idx_count(out) : 0;
    if (r == MST_OK && n == 0 && !(out->data = malloc(1))) r = mst_fail(err, MST_ERR_NOMEM, "out of memory reading %s", path);
    if (r == MST_OK) r = read_data(f, path, n, out, err);
    unsigned char extra;
    if (r == MST_OK && gzread(f, &extra, 1) == 1)
        r = mst_fail(err, MST_ERR_FORMAT, "%s: bytes after the %ld the dimensions describe", path, n);
    gzclose(f);
    if (r != MST_OK) mst_idx_free(out);
    return r;
}
