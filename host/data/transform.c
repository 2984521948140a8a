#include "transform.h"

/* Source coordinate of output index i (torch's area_pixel_compute_source_index). */
static float source(int i, float scale)
{
    float s = scale * ((float)i + 0.5f) - 0.5f;
    return s < 0.0f ? 0.0f : s;
}

void mst_transform_bilinear(const mst_transform *t, const uint8_t *pix, int H, int W, float *out)
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
