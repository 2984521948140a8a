/* Image files: PNG (libspng) and JPEG (TurboJPEG), decoded to 8-bit pixels as
 * Pillow's convert("RGB") / convert("L") would give them. */
#ifndef MST_IMAGE_H
#define MST_IMAGE_H

#include <stdint.h>

#include "mst/mst.h"

typedef struct {
    int height, width, channels; /* channels: 1 (grayscale) or 3 (RGB) */
    uint8_t *pixels;             /* [height][width][channels] */
} mst_image;

/* 2^27 pixels (134 megapixels, 16384 x 8192): far over any photograph in
 * ImageNet, and a bound on what a file's header can make us allocate. */
#define MST_IMAGE_MAX_PIXELS (1L << 27)

/* Decodes a PNG or JPEG file (told apart by their signatures). Alpha is
 * dropped, CMYK converted to RGB, 16-bit samples reduced to 8. Images over
 * MST_IMAGE_MAX_PIXELS are refused from their header, before decoding. */
mst_status mst_image_read(const char *path, mst_image *out, mst_error *err);
void mst_image_free(mst_image *im);

/* Converts in place to `channels` (1 or 3) as Pillow's convert("L") /
 * convert("RGB") would: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16. */
mst_status mst_image_to_channels(mst_image *im, int channels, mst_error *err);

#endif
