/* The zip container of torch.save (PKWARE APPNOTE 6.3): torch writes stored
 * entries, 64-byte aligned data (padding in a local extra field), a data
 * descriptor after each entry and zip64 end records. Every size is written
 * twice or three times; a file where they disagree is refused rather than
 * believed one way. */
#include "zip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../error.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define SIG_DESCRIPTOR 0x08074b50u
#define FLAG_ENCRYPTED 0x0001u
#define FLAG_DESCRIPTOR 0x0008u
#define FLAG_STRONG_ENCRYPTION 0x0040u
#define MAX32 0xffffffffu

typedef struct {
    const uint8_t *buf;
    size_t size;
    const char *path;
    mst_error *err;
} zreader;

typedef struct {
    uint16_t flags, method;
    uint32_t crc;
    uint64_t csize, usize, local; /* local header offset */
    const uint8_t *name;
    uint16_t name_len;
    uint64_t begin, end; /* the entry's bytes in the file: local header to descriptor */
} zcentral;

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t u64(const uint8_t *p) { return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32; }

/* [at, at + n) inside the file, without overflow */
static int inside(const zreader *r, uint64_t at, uint64_t n) { return at <= r->size && n <= r->size - at; }

static mst_status bad(const zreader *r, const char *what, uint64_t at)
{
    return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip: %s (at byte %llu)", r->path, what, (unsigned long long)at);
}

/* The end record: the last 22 bytes whose comment length reaches the end. */
static mst_status find_end(const zreader *r, uint64_t *end)
{
    if (r->size < 22) return bad(r, "no end of central directory record: file too short", 0);
    uint64_t lowest = r->size > 22 + 65535 ? r->size - 22 - 65535 : 0;
    for (uint64_t at = r->size - 22 + 1; at-- > lowest;)
        if (u32(r->buf + at) == SIG_END && at + 22 + u16(r->buf + at + 20) == r->size) {
            *end = at;
            return MST_OK;
        }
    return bad(r, "no end of central directory record (not a zip file, or truncated)", r->size);
}

/* The zip64 record holds the true values; the end record's copies must be
 * all ones or the same. */
static int agree(uint64_t end_field, uint64_t max, uint64_t zip64_field) { return end_field == max || end_field == zip64_field; }

static mst_status read_end64(const zreader *r, uint64_t end, uint64_t *count, uint64_t *cd_size, uint64_t *cd_off)
{
    if (end < 20 || u32(r->buf + end - 20) != SIG_LOCATOR64) return MST_OK;
    const uint8_t *loc = r->buf + end - 20;
    uint64_t at = u64(loc + 8);
    if (u32(loc + 4) != 0 || u32(loc + 16) > 1) return bad(r, "multi-disk archives are not supported", end - 20);
    if (!inside(r, at, 56) || at + 56 > end - 20 || u32(r->buf + at) != SIG_END64)
        return bad(r, "zip64 locator points to no zip64 end record", end - 20);
    const uint8_t *e = r->buf + at;
    if (u32(e + 16) != 0 || u32(e + 20) != 0 || u64(e + 24) != u64(e + 32))
        return bad(r, "multi-disk archives are not supported", at);
    if (!agree(*count, 0xffff, u64(e + 32)) || !agree(*cd_size, MAX32, u64(e + 40)) || !agree(*cd_off, MAX32, u64(e + 48)))
        return bad(r, "the end record and the zip64 end record disagree", end);
    *count = u64(e + 32);
    *cd_size = u64(e + 40);
    *cd_off = u64(e + 48);
    return MST_OK;
}

static mst_status read_end(const zreader *r, uint64_t *count, uint64_t *cd_off, uint64_t *cd_end)
{
    uint64_t end = 0;
    mst_status s = find_end(r, &end);
    if (s != MST_OK) return s;
    const uint8_t *e = r->buf + end;
    if (u16(e + 4) != 0 || u16(e + 6) != 0 || u16(e + 8) != u16(e + 10))
        return bad(r, "multi-disk archives are not supported", end);
    uint64_t n = u16(e + 10), size = u32(e + 12), off = u32(e + 16);
    s = read_end64(r, end, &n, &size, &off);
    if (s != MST_OK) return s;
    if (!inside(r, off, size)) return bad(r, "central directory lies outside the file", end);
    if (n > size / 46) return bad(r, "entry count does not fit in the central directory", end);
    *count = n, *cd_off = off, *cd_end = off + size;
    return MST_OK;
}

/* zip64 extended information (id 1) replaces the 32-bit fields that are
 * all ones, in this order. */
static mst_status zip64_extra(const zreader *r, const uint8_t *x, uint16_t len, uint64_t at, zcentral *c)
{
    uint64_t *fields[3] = {&c->usize, &c->csize, &c->local};
    int wanted = 0;
    for (int i = 0; i < 3; i++) wanted += *fields[i] == MAX32;
    for (uint16_t i = 0; wanted && i + 4 <= len;) {
        uint16_t id = u16(x + i), n = u16(x + i + 2);
        if (i + 4 + n > len) break;
        if (id == 1) {
            const uint8_t *p = x + i + 4;
            for (int f = 0; f < 3; f++) {
                if (*fields[f] != MAX32) continue;
                if (p + 8 > x + i + 4 + n) return bad(r, "zip64 extra field too short", at);
                *fields[f] = u64(p);
                p += 8;
            }
            return MST_OK;
        }
        i = (uint16_t)(i + 4 + n);
    }
    return wanted ? bad(r, "32-bit size or offset of all ones without a zip64 extra field", at) : MST_OK;
}

static mst_status read_central(const zreader *r, uint64_t at, uint64_t cd_end, zcentral *c, uint64_t *next)
{
    if (at + 46 > cd_end || u32(r->buf + at) != SIG_CENTRAL) return bad(r, "bad central directory entry", at);
    const uint8_t *h = r->buf + at;
    uint64_t nlen = u16(h + 28), xlen = u16(h + 30), clen = u16(h + 32);
    if (at + 46 + nlen + xlen + clen > cd_end) return bad(r, "central directory entry runs past the directory", at);
    *c = (zcentral){.flags = u16(h + 8), .method = u16(h + 10), .crc = u32(h + 16), .csize = u32(h + 20),
                    .usize = u32(h + 24), .local = u32(h + 42), .name = h + 46, .name_len = (uint16_t)nlen};
    if (u16(h + 34) != 0 && u16(h + 34) != 0xffff) return bad(r, "multi-disk archives are not supported", at);
    *next = at + 46 + nlen + xlen + clen;
    return zip64_extra(r, h + 46 + nlen, (uint16_t)xlen, at, c);
}

/* torch reads entries by name under one archive folder: a name that climbs
 * out of it, is absolute or carries a NUL would mean something else to an
 * extracting tool than to us. */
static mst_status check_name(const zreader *r, const zcentral *c, uint64_t at)
{
    const char *n = (const char *)c->name;
    size_t len = c->name_len;
    if (len == 0) return bad(r, "entry with an empty name", at);
    if (memchr(n, 0, len) || memchr(n, '\\', len)) return bad(r, "entry name holds a NUL or a backslash", at);
    if (n[0] == '/') return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip: entry \"%.*s\" has an absolute name", r->path, (int)len, n);
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && n[j] != '/') j++;
        if (j - i == 2 && n[i] == '.' && n[i + 1] == '.')
            return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip: entry \"%.*s\" climbs out of the archive (\"..\")",
                            r->path, (int)len, n);
        i = j + 1;
    }
    return MST_OK;
}

static mst_status check_method(const zreader *r, const zcentral *c)
{
    int len = c->name_len;
    const char *n = (const char *)c->name;
    if (c->flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION))
        return mst_fail(r->err, MST_ERR_UNSUPPORTED, "%s: zip entry \"%.*s\" is encrypted", r->path, len, n);
    if (c->method != 0)
        return mst_fail(r->err, MST_ERR_UNSUPPORTED,
                        "%s: zip entry \"%.*s\" is compressed (method %u); torch.save stores entries uncompressed, "
                        "re-save the checkpoint with torch.save", r->path, len, n, c->method);
    if (c->csize != c->usize)
        return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip entry \"%.*s\" is stored but its sizes differ (%llu, %llu)",
                        r->path, len, n, (unsigned long long)c->csize, (unsigned long long)c->usize);
    return MST_OK;
}

/* The data descriptor after the data, with or without its signature, with
 * 32-bit or 64-bit sizes: it must repeat the central directory's CRC and
 * size. Returns its length, 0 where none matches. */
static uint64_t descriptor(const zreader *r, uint64_t at, const zcentral *c)
{
    for (int sig = 1; sig >= 0; sig--)
        for (int wide = 0; wide <= 1; wide++) {
            uint64_t len = 4 * (uint64_t)sig + 4 + (wide ? 16 : 8);
            if (!inside(r, at, len)) continue;
            const uint8_t *p = r->buf + at;
            if (sig && u32(p) != SIG_DESCRIPTOR) continue;
            p += 4 * sig;
            uint64_t cs = wide ? u64(p + 4) : u32(p + 4), us = wide ? u64(p + 12) : u32(p + 8);
            if (u32(p) == c->crc && cs == c->csize && us == c->usize) return len;
        }
    return 0;
}

static mst_status read_local(const zreader *r, zcentral *c, mst_zip_entry *e)
{
    int len = c->name_len;
    const char *n = (const char *)c->name;
    if (!inside(r, c->local, 30) || u32(r->buf + c->local) != SIG_LOCAL)
        return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip entry \"%.*s\": no local header at byte %llu", r->path, len, n,
                        (unsigned long long)c->local);
    const uint8_t *h = r->buf + c->local;
    uint64_t data = c->local + 30 + u16(h + 26) + u16(h + 28);
    if (u16(h + 26) != len || !inside(r, c->local + 30, len) || memcmp(h + 30, n, (size_t)len) ||
        u16(h + 8) != c->method || (u16(h + 6) & FLAG_DESCRIPTOR) != (c->flags & FLAG_DESCRIPTOR))
        return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip entry \"%.*s\": local header disagrees with the central directory",
                        r->path, len, n);
    if (!inside(r, data, c->csize))
        return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip entry \"%.*s\": %llu bytes at byte %llu run past the end of the file",
                        r->path, len, n, (unsigned long long)c->csize, (unsigned long long)data);
    uint64_t tail = 0;
    if (c->flags & FLAG_DESCRIPTOR) {
        if (!(tail = descriptor(r, data + c->csize, c)))
            return mst_fail(r->err, MST_ERR_FORMAT,
                            "%s: zip entry \"%.*s\": the data descriptor disagrees with the central directory's size or CRC",
                            r->path, len, n);
    } else if (u32(h + 14) != c->crc || (u32(h + 18) != MAX32 && u32(h + 18) != c->csize) ||
               (u32(h + 22) != MAX32 && u32(h + 22) != c->usize)) {
        return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip entry \"%.*s\": local header sizes or CRC disagree with the central directory",
                        r->path, len, n);
    }
    c->begin = c->local;
    c->end = data + c->csize + tail;
    e->data = r->buf + data;
    e->size = c->csize;
    return MST_OK;
}

static int by_begin(const void *a, const void *b)
{
    const zcentral *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const mst_zip_entry *)a)->name, ((const mst_zip_entry *)b)->name);
}

/* Overlapping entries would let one byte range be read as two things. */
static mst_status check_layout(const zreader *r, zcentral *c, mst_zip *z, uint64_t cd_off)
{
    qsort(c, (size_t)z->num_entries, sizeof *c, by_begin);
    for (int i = 0; i < z->num_entries; i++) {
        uint64_t limit = i + 1 < z->num_entries ? c[i + 1].begin : cd_off;
        if (c[i].end > limit)
            return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip entry \"%.*s\" overlaps %s", r->path, c[i].name_len,
                            (const char *)c[i].name, i + 1 < z->num_entries ? "the next entry" : "the central directory");
    }
    qsort(z->entries, (size_t)z->num_entries, sizeof *z->entries, by_name);
    for (int i = 1; i < z->num_entries; i++)
        if (!strcmp(z->entries[i - 1].name, z->entries[i].name))
            return mst_fail(r->err, MST_ERR_FORMAT, "%s: zip entry \"%s\" appears twice", r->path, z->entries[i].name);
    return MST_OK;
}

static mst_status read_entry(const zreader *r, zcentral *c, mst_zip_entry *e, uint64_t at)
{
    mst_status s = check_name(r, c, at);
    if (s == MST_OK) s = check_method(r, c);
    if (s != MST_OK) return s;
    if (!(e->name = strndup((const char *)c->name, c->name_len)))
        return mst_fail(r->err, MST_ERR_NOMEM, "out of memory");
    e->crc = c->crc;
    return read_local(r, c, e);
}

mst_status mst_zip_open(const uint8_t *buf, size_t size, const char *path, mst_zip *z, mst_error *err)
{
    memset(z, 0, sizeof *z);
    zreader r = {buf, size, path, err};
    uint64_t n = 0, at = 0, cd_end = 0;
    mst_status s = read_end(&r, &n, &at, &cd_end);
    if (s != MST_OK) return s;
    uint64_t cd_off = at;
    zcentral *c = calloc((size_t)n + 1, sizeof *c);
    z->entries = calloc((size_t)n + 1, sizeof *z->entries);
    if (!c || !z->entries) s = mst_fail(err, MST_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; s == MST_OK && i < n; i++) {
        uint64_t here = at;
        s = read_central(&r, here, cd_end, &c[i], &at);
        if (s == MST_OK) {
            z->num_entries++;
            s = read_entry(&r, &c[i], &z->entries[i], here);
        }
    }
    if (s == MST_OK) s = check_layout(&r, c, z, cd_off);
    free(c);
    if (s != MST_OK) mst_zip_close(z);
    return s;
}

/* A CRC mismatch means the sizes or the data lie. Fuzzing builds skip it so
 * that mutated data reaches the parsers behind the container. */
mst_status mst_zip_verify(const mst_zip_entry *e, const char *path, mst_error *err)
{
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    uLong crc = crc32(0L, Z_NULL, 0);
    for (uint64_t at = 0; at < e->size;) {
        uInt n = e->size - at > (1u << 30) ? (1u << 30) : (uInt)(e->size - at);
        crc = crc32(crc, e->data + at, n);
        at += n;
    }
    if ((uint32_t)crc != e->crc)
        return mst_fail(err, MST_ERR_FORMAT, "%s: zip entry \"%s\": CRC-32 %08x, the directory says %08x", path, e->name,
                        (unsigned)crc, (unsigned)e->crc);
#else
    (void)e, (void)path, (void)err;
#endif
    return MST_OK;
}

const mst_zip_entry *mst_zip_find(const mst_zip *z, const char *name)
{
    mst_zip_entry key = {.name = (char *)name};
    return z->entries ? bsearch(&key, z->entries, (size_t)z->num_entries, sizeof key, by_name) : NULL;
}

void mst_zip_close(mst_zip *z)
{
    for (int i = 0; z->entries && i < z->num_entries; i++) free(z->entries[i].name);
    free(z->entries);
    memset(z, 0, sizeof *z);
}
