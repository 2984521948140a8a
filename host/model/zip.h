/* A validating reader of the zip container torch.save writes (torch >= 1.6):
 * stored entries only, zip64 where needed, every entry checked against its
 * local header, its data descriptor and its CRC-32 before anything reads it. */
#ifndef MST_ZIP_H
#define MST_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "mst/mst.h"

typedef struct {
    char *name;
    const uint8_t *data; /* inside the caller's buffer */
    uint64_t size;
    uint32_t crc; /* as the directory, local header and descriptor agree it is */
} mst_zip_entry;

typedef struct {
    mst_zip_entry *entries; /* sorted by name */
    int num_entries;
} mst_zip;

/* Reads the central directory of buf[0, size) and checks every entry: names
 * that stay inside the archive and appear once, no compression or
 * encryption, data inside the file, no two entries overlapping, sizes and
 * CRC-32 values that agree everywhere they are written. `path` names the
 * file in errors. The entries point into buf, which must outlive z. */
mst_status mst_zip_open(const uint8_t *buf, size_t size, const char *path, mst_zip *z, mst_error *err);
/* The entry's data against its CRC-32: run on every entry before its bytes
 * are used (a training checkpoint's optimizer state, never read, is never
 * summed). */
mst_status mst_zip_verify(const mst_zip_entry *e, const char *path, mst_error *err);
const mst_zip_entry *mst_zip_find(const mst_zip *z, const char *name);
void mst_zip_close(mst_zip *z);

#endif
