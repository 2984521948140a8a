#include "npy.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"

long mst_npy_numel(const mst_npy *a)
{
    long n = 1;
    for (int i = 0; i < a->ndim; i++) n *= a->shape[i];
    return n;
}

/* The element count, or -1 when it would overflow. */
static long checked_numel(const mst_npy *a)
{
    long n = 1;
    for (int i = 0; i < a->ndim; i++)
        if (__builtin_mul_overflow(n, a->shape[i], &n) || n > LONG_MAX / (long)sizeof(float)) return -1;
    return n;
}

void mst_npy_free(mst_npy *a)
{
    free(a->data);
    a->data = NULL;
}

/* The value that directly follows 'key': in a Python dict literal, or NULL. */
static const char *value_of(const char *h, const char *key)
{
    const char *k = strstr(h, key);
    if (!k) return NULL;
    k += strlen(key);
    k += strspn(k, " ");
    if (*k != ':') return NULL;
    return k + 1 + strspn(k + 1, " ");
}

/* The header is a Python dict literal; we need descr, fortran_order, shape. */
static mst_status parse_header(const char *path, const char *h, mst_npy *out, mst_error *err)
{
    const char *d = value_of(h, "'descr'"), *f = value_of(h, "'fortran_order'"), *p = value_of(h, "'shape'");
    if (!d || !f || !p) return mst_fail(err, MST_ERR_FORMAT, "%s: .npy header lacks descr, fortran_order or shape", path);
    if (strncmp(d, "'<f4'", 5) != 0)
        return mst_fail(err, MST_ERR_FORMAT, "%s: .npy dtype must be little-endian float32 ('<f4')", path);
    if (strncmp(f, "False", 5) != 0)
        return mst_fail(err, MST_ERR_FORMAT, "%s: Fortran-ordered .npy arrays are not supported", path);
    if (*p != '(') return mst_fail(err, MST_ERR_FORMAT, "%s: bad .npy shape", path);
    p++;
    out->ndim = 0;
    while (*p && *p != ')') {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || errno) return mst_fail(err, MST_ERR_FORMAT, "%s: bad .npy shape", path);
        if (out->ndim == 8) return mst_fail(err, MST_ERR_FORMAT, "%s: .npy rank over 8", path);
        out->shape[out->ndim++] = v;
        p = end + strspn(end, " ,");
    }
    return *p == ')' ? MST_OK : mst_fail(err, MST_ERR_FORMAT, "%s: bad .npy shape", path);
}

static mst_status read_header(FILE *fp, const char *path, mst_npy *out, mst_error *err)
{
    unsigned char pre[10];
    if (fread(pre, 1, 8, fp) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return mst_fail(err, MST_ERR_FORMAT, "%s: not a .npy file", path);
    size_t hl = 0;
    if (pre[6] == 1) {
        if (fread(pre + 8, 1, 2, fp) != 2) return mst_fail(err, MST_ERR_FORMAT, "%s: truncated .npy header", path);
        hl = (size_t)pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char l[4];
        if (fread(l, 1, 4, fp) != 4) return mst_fail(err, MST_ERR_FORMAT, "%s: truncated .npy header", path);
        hl = (size_t)l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24;
    } else {
        return mst_fail(err, MST_ERR_FORMAT, "%s: unknown .npy version %d", path, pre[6]);
    }
    if (hl > (1u << 20)) return mst_fail(err, MST_ERR_FORMAT, "%s: .npy header too long", path);
    char *h = calloc(hl + 1, 1);
    if (!h) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    mst_status r = fread(h, 1, hl, fp) == hl ? parse_header(path, h, out, err)
                                              : mst_fail(err, MST_ERR_FORMAT, "%s: truncated .npy header", path);
    free(h);
    return r;
}

/* The data must be exactly what the shape says: no less, no more. */
static mst_status check_size(FILE *fp, const char *path, long n, mst_error *err)
{
    long at = ftell(fp);
    if (at < 0 || fseek(fp, 0, SEEK_END) != 0) return mst_fail(err, MST_ERR_IO, "%s: cannot seek", path);
    long size = ftell(fp);
    if (fseek(fp, at, SEEK_SET) != 0) return mst_fail(err, MST_ERR_IO, "%s: cannot seek", path);
    if (n < 0) return mst_fail(err, MST_ERR_FORMAT, "%s: .npy shape is too large", path);
    if (size - at < n * (long)sizeof(float))
        return mst_fail(err, MST_ERR_FORMAT, "%s: truncated: the shape needs %ld float32 values, the file holds %ld",
                        path, n, (size - at) / (long)sizeof(float));
    if (size - at > n * (long)sizeof(float))
        return mst_fail(err, MST_ERR_FORMAT, "%s: %ld bytes after the %ld float32 values the shape describes", path,
                        size - at - n * (long)sizeof(float), n);
    return MST_OK;
}

mst_status mst_npy_read(const char *path, mst_npy *out, mst_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return mst_fail(err, MST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mst_status r = read_header(fp, path, out, err);
    long n = r == MST_OK ? checked_numel(out) : 0;
    if (r == MST_OK) r = check_size(fp, path, n, err);
    if (r == MST_OK && !(out->data = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1))))
        r = mst_fail(err, MST_ERR_NOMEM, "out of memory reading %s", path);
    if (r == MST_OK && fread(out->data, sizeof(float), (size_t)n, fp) != (size_t)n)
        r = mst_fail(err, MST_ERR_IO, "%s: read failed", path);
    fclose(fp);
    if (r != MST_OK) mst_npy_free(out);
    return r;
}

mst_status mst_npy_write(const char *path, const float *data, int ndim, const long *shape, mst_error *err)
{
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    long n = 1;
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%ld%s", shape[i], ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        n *= shape[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    int total = (10 + len + 1 + 63) / 64 * 64; /* header padded so the data is 64-byte aligned */
    FILE *fp = fopen(path, "wb");
    if (!fp) return mst_fail(err, MST_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((total - 10) & 0xFF),
                             (unsigned char)((total - 10) >> 8)};
    int ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(dict, 1, (size_t)len, fp) == (size_t)len;
    for (int i = 10 + len; ok && i < total - 1; i++) ok = fputc(' ', fp) != EOF;
    ok = ok && fputc('\n', fp) != EOF && fwrite(data, sizeof(float), (size_t)n, fp) == (size_t)n;
    ok = fclose(fp) == 0 && ok;
    return ok ? MST_OK : mst_fail(err, MST_ERR_IO, "%s: write failed", path);
}
