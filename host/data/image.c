#include "image.h"

#include <errno.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "../error.h"

void mst_image_free(mst_image *im)
{
    free(im->pixels);
    im->pixels = NULL;
}

static mst_status slurp(const char *path, unsigned char **data, size_t *n, mst_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return mst_fail(err, MST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    mst_status r = MST_OK;
    if (size <= 0) r = mst_fail(err, MST_ERR_FORMAT, "%s: empty or unreadable file", path);
    if (r == MST_OK && !(*data = malloc((size_t)size))) r = mst_fail(err, MST_ERR_NOMEM, "out of memory reading %s", path);
    if (r == MST_OK && (fseek(f, 0, SEEK_SET) != 0 || fread(*data, 1, (size_t)size, f) != (size_t)size))
        r = mst_fail(err, MST_ERR_IO, "%s: read failed", path);
    fclose(f);
    *n = (size_t)size;
    return r;
}

static mst_status too_big(const char *path, long w, long h, mst_error *err)
{
    if (w * h <= MST_IMAGE_MAX_PIXELS) return MST_OK;
    return mst_fail(err, MST_ERR_UNSUPPORTED, "%s: an image of %ld x %ld pixels, over the %ld-pixel limit", path, w, h,
                    MST_IMAGE_MAX_PIXELS);
}

/* Gray stays gray; everything else becomes RGB (alpha dropped, as Pillow does). */
static mst_status decode_png(const char *path, const unsigned char *data, size_t n, mst_image *im, mst_error *err)
{
    spng_ctx *ctx = spng_ctx_new(0);
    struct spng_ihdr ihdr;
    size_t size = 0;
    int e = ctx ? spng_set_png_buffer(ctx, data, n) : SPNG_EMEM;
    if (!e) e = spng_get_ihdr(ctx, &ihdr);
    if (!e && too_big(path, (long)ihdr.width, (long)ihdr.height, err) != MST_OK) {
        spng_ctx_free(ctx);
        return err->status;
    }
    if (!e) e = spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &size);
    unsigned char *rgba = e ? NULL : malloc(size);
    if (!e && !rgba) e = SPNG_EMEM;
    if (!e) e = spng_decode_image(ctx, rgba, size, SPNG_FMT_RGBA8, 0);
    spng_ctx_free(ctx);
    if (e) {
        free(rgba);
        return mst_fail(err, MST_ERR_FORMAT, "%s: bad PNG: %s", path, spng_strerror(e));
    }
    int gray = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE || ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
    im->height = (int)ihdr.height, im->width = (int)ihdr.width, im->channels = gray ? 1 : 3;
    long px = (long)im->height * im->width;
    im->pixels = malloc((size_t)(px * im->channels));
    if (!im->pixels) {
        free(rgba);
        return mst_fail(err, MST_ERR_NOMEM, "out of memory decoding %s", path);
    }
    for (long i = 0; i < px; i++)
        for (int c = 0; c < im->channels; c++) im->pixels[i * im->channels + c] = rgba[4 * i + c];
    free(rgba);
    return MST_OK;
}

/* Adobe's APP14 marker: its CMYK JPEGs store inverted ink, which Pillow undoes. */
static int adobe_marker(const unsigned char *d, size_t n)
{
    for (size_t i = 2; i + 4 < n && d[i] == 0xFF;) {
        unsigned m = d[i + 1], len = (unsigned)d[i + 2] << 8 | d[i + 3];
        if (m == 0xEE && i + 9 < n && memcmp(d + i + 4, "Adobe", 5) == 0) return 1;
        if (m == 0xDA) break; /* start of scan: no more markers before the data */
        i += 2 + len;
    }
    return 0;
}

/* Pillow's CMYK -> RGB: each channel (255 - k) - c * (255 - k) / 255, rounded. */
static void cmyk_to_rgb(const unsigned char *cmyk, long px, int inverted, uint8_t *rgb)
{
    for (long i = 0; i < px; i++) {
        int k = inverted ? 255 - cmyk[4 * i + 3] : cmyk[4 * i + 3], nk = 255 - k;
        for (int c = 0; c < 3; c++) {
            int ink = inverted ? 255 - cmyk[4 * i + c] : cmyk[4 * i + c], t = ink * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[3 * i + c] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

/* libjpeg's warnings (extraneous bytes before a marker, ...) do not stop
 * Pillow, which decodes through them; a file that ends early does
 * ("image file is truncated"). The same rule here. */
static int jpeg_failed(tjhandle tj, int rc)
{
    if (rc == 0) return 0;
    return tjGetErrorCode(tj) == TJERR_FATAL || strstr(tjGetErrorStr2(tj), "Premature end") != NULL;
}

static mst_status decode_jpeg(const char *path, const unsigned char *data, size_t n, mst_image *im, mst_error *err)
{
    tjhandle tj = tjInitDecompress();
    int w = 0, h = 0, subsamp, colorspace = TJCS_RGB;
    if (!tj) return mst_fail(err, MST_ERR_NOMEM, "TurboJPEG: %s", tjGetErrorStr2(NULL));
    mst_status r = MST_OK;
    if (jpeg_failed(tj, tjDecompressHeader3(tj, data, (unsigned long)n, &w, &h, &subsamp, &colorspace)) || w < 1 || h < 1)
        r = mst_fail(err, MST_ERR_FORMAT, "%s: bad JPEG: %s", path, tjGetErrorStr2(tj));
    if (r == MST_OK) r = too_big(path, w, h, err);
    int cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK, gray = colorspace == TJCS_GRAY;
    int fmt = cmyk ? TJPF_CMYK : (gray ? TJPF_GRAY : TJPF_RGB), bpp = tjPixelSize[cmyk ? TJPF_CMYK : fmt];
    unsigned char *buf = r == MST_OK ? malloc((size_t)w * h * bpp) : NULL;
    if (r == MST_OK && !buf) r = mst_fail(err, MST_ERR_NOMEM, "out of memory decoding %s", path);
    /* exact IDCT and fancy upsampling: libjpeg's defaults, which Pillow uses */
    if (r == MST_OK && jpeg_failed(tj, tjDecompress2(tj, data, (unsigned long)n, buf, w, 0, h, fmt, TJFLAG_ACCURATEDCT)))
        r = mst_fail(err, MST_ERR_FORMAT, "%s: corrupt or truncated JPEG: %s", path, tjGetErrorStr2(tj));
    tjDestroy(tj);
    if (r == MST_OK) {
        im->height = h, im->width = w, im->channels = gray ? 1 : 3;
        im->pixels = cmyk ? malloc((size_t)w * h * 3) : buf;
        if (!im->pixels) r = mst_fail(err, MST_ERR_NOMEM, "out of memory decoding %s", path);
        if (r == MST_OK && cmyk) cmyk_to_rgb(buf, (long)w * h, adobe_marker(data, n), im->pixels);
    }
    if (r != MST_OK || cmyk) free(buf);
    return r;
}

mst_status mst_image_read(const char *path, mst_image *out, mst_error *err)
{
    memset(out, 0, sizeof *out);
    unsigned char *data = NULL;
    size_t n = 0;
    mst_status r = slurp(path, &data, &n, err);
    if (r == MST_OK) {
        if (n >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
            r = decode_png(path, data, n, out, err);
        else if (n >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
            r = decode_jpeg(path, data, n, out, err);
        else
            r = mst_fail(err, MST_ERR_FORMAT, "%s: neither a PNG nor a JPEG file", path);
    }
    free(data);
    if (r != MST_OK) mst_image_free(out);
    return r;
}

mst_status mst_image_to_channels(mst_image *im, int channels, mst_error *err)
{
    if (im->channels == channels) return MST_OK;
    if (channels != 1 && channels != 3)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "images can become 1 or 3 channels, not %d", channels);
    long px = (long)im->height * im->width;
    uint8_t *p = malloc((size_t)(px * channels));
    if (!p) return mst_fail(err, MST_ERR_NOMEM, "out of memory converting an image");
    for (long i = 0; i < px; i++) {
        const uint8_t *s = im->pixels + i * im->channels;
        if (channels == 3)
            p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = s[0];
        else
            p[i] = (uint8_t)((19595u * s[0] + 38470u * s[1] + 7471u * s[2] + 0x8000u) >> 16);
    }
    free(im->pixels);
    im->pixels = p;
    im->channels = channels;
    return MST_OK;
}
