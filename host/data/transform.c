#include "transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"

/* Source coordinate of output index i (torch's area_pixel_compute_source_index). */
static float source(int i, float scale)
{
    float s = scale * ((float)i + 0.5f) - 0.5f;
    return s < 0.0f ? 0.0f : s;
}

static void tensor_bilinear(const mst_transform *t, const uint8_t *pix, int H, int W, float *out)
{
    int C = t->channels, S = t->size;
    float sy = (float)H / (float)S, sx = (float)W / (float)S;
    for (int y = 0; y < S; y++) {
        float fy = source(y, sy);
        int y0 = (int)fy, y1 = y0 + 1 < H ? y0 + 1 : H - 1;
        float ly = fy - (float)y0, hy = 1.0f - ly;
        for (int x = 0; x < S; x++) {
            float fx = source(x, sx);
            int x0 = (int)fx, x1 = x0 + 1 < W ? x0 + 1 : W - 1;
            float lx = fx - (float)x0, hx = 1.0f - lx;
            for (int c = 0; c < C; c++) {
                float p00 = pix[((long)y0 * W + x0) * C + c] / 255.0f, p01 = pix[((long)y0 * W + x1) * C + c] / 255.0f;
                float p10 = pix[((long)y1 * W + x0) * C + c] / 255.0f, p11 = pix[((long)y1 * W + x1) * C + c] / 255.0f;
                float v = hy * (hx * p00 + lx * p01) + ly * (hx * p10 + lx * p11);
                out[((long)c * S + y) * S + x] = (v - t->mean[c]) / t->std[c];
            }
        }
    }
}

/* timm's scale size: floor(size / crop_pct). */
static int scale_size(const mst_transform *t) { return (int)floor((double)t->size / t->crop_pct); }

mst_status mst_transform_pil_pixels(const mst_transform *t, const uint8_t *pix, int H, int W, uint8_t *out,
                                    mst_error *err)
{
    int C = t->channels, S = t->size, rh, rw;
    mst_resize_shorter(H, W, scale_size(t), &rh, &rw);
    if (rh < 1 || rw < 1) return mst_fail(err, MST_ERR_VALUE, "a %dx%d image cannot be resized to a shorter side of %d", H, W, scale_size(t));
    uint8_t *mid = malloc((size_t)rh * (size_t)rw * (size_t)C);
    if (!mid) return mst_fail(err, MST_ERR_NOMEM, "out of memory resizing a %dx%d image", H, W);
    mst_status r = mst_pil_resize(pix, H, W, C, rh, rw, t->filter, mid, err);
    /* a crop larger than the image pads with zeros, as torchvision does */
    int top = rh >= S ? mst_center_offset(rh, S) : -((S - rh) / 2);
    int left = rw >= S ? mst_center_offset(rw, S) : -((S - rw) / 2);
    for (int y = 0; r == MST_OK && y < S; y++)
        for (int x = 0; x < S; x++) {
            int sy = y + top, sx = x + left, inside = sy >= 0 && sy < rh && sx >= 0 && sx < rw;
            for (int c = 0; c < C; c++)
                out[((long)y * S + x) * C + c] = inside ? mid[((long)sy * rw + sx) * C + c] : 0;
        }
    free(mid);
    return r;
}

mst_status mst_transform_apply(const mst_transform *t, const uint8_t *pix, int H, int W, float *out, mst_error *err)
{
    int C = t->channels, S = t->size;
    if (t->kind == MST_RESIZE_TENSOR_BILINEAR) {
        tensor_bilinear(t, pix, H, W, out);
        return MST_OK;
    }
    uint8_t *crop = malloc((size_t)S * (size_t)S * (size_t)C);
    if (!crop) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    mst_status r = mst_transform_pil_pixels(t, pix, H, W, crop, err);
    for (long i = 0; r == MST_OK && i < (long)S * S; i++)
        for (int c = 0; c < C; c++) out[(long)c * S * S + i] = ((float)crop[i * C + c] / 255.0f - t->mean[c]) / t->std[c];
    free(crop);
    return r;
}
