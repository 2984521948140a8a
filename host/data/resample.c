#include "resample.h"

#include <fenv.h>
#include <math.h>
#include <stdlib.h>

#include "../error.h"

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double bicubic(double x) /* a = -0.5 */
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    int ksize;
    int *bounds;  /* [out][2]: first input index, count */
    int32_t *k;   /* [out][ksize] fixed-point weights */
} coeffs;

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis. */
static int precompute(int in_size, int out_size, mst_filter f, coeffs *c)
{
    double (*filter)(double) = f == MST_FILTER_BICUBIC ? bicubic : bilinear;
    double support = f == MST_FILTER_BICUBIC ? 2.0 : 1.0;
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    support *= filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->k = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)c->ksize);
    double *w = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->bounds || !c->k || !w) {
        free(w);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        xmin = xmin < 0 ? 0 : xmin;
        xmax = (xmax > in_size ? in_size : xmax) - xmin;
        for (int x = 0; x < xmax; x++) ww += (w[x] = filter((x + xmin - center + 0.5) * ss));
        int32_t *k = c->k + (long)xx * c->ksize;
        for (int x = 0; x < c->ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return 1;
}

static uint8_t clip8(int32_t ss)
{
    ss >>= PRECISION_BITS;
    return (uint8_t)(ss < 0 ? 0 : (ss > 255 ? 255 : ss));
}

/* Pixels [rows][cols][C] -> [cols][rows][C]. */
static inline __attribute__((always_inline)) void transpose_c(const uint8_t *src, int rows, int cols, uint8_t *dst,
                                                              const int C)
{
    enum { TILE = 32 }; /* both sides of a tile stay in L1 */
    for (int y0 = 0; y0 < rows; y0 += TILE)
        for (int x0 = 0; x0 < cols; x0 += TILE) {
            int y1 = y0 + TILE < rows ? y0 + TILE : rows, x1 = x0 + TILE < cols ? x0 + TILE : cols;
            for (int x = x0; x < x1; x++)
                for (int y = y0; y < y1; y++)
                    for (int c = 0; c < C; c++) dst[((long)x * rows + y) * C + c] = src[((long)y * cols + x) * C + c];
        }
}

static void transpose(const uint8_t *src, int rows, int cols, int C, uint8_t *dst)
{
    switch (C) {
    case 1: transpose_c(src, rows, cols, dst, 1); break;
    case 3: transpose_c(src, rows, cols, dst, 3); break;
    case 4: transpose_c(src, rows, cols, dst, 4); break;
    default: transpose_c(src, rows, cols, dst, 2); break;
    }
}

/* One line of outputs from `n` input lines weighted by k: each tap adds a
 * whole line into int32 accumulators (a loop the compiler vectorises);
 * integer sums, so the order does not change Pillow's result. */
static void weighted_lines(const uint8_t *src, long line, const int32_t *k, int n, int32_t *acc, uint8_t *dst)
{
    for (long i = 0; i < line; i++) acc[i] = 1 << (PRECISION_BITS - 1);
    for (int t = 0; t < n; t++) {
        const uint8_t *s = src + (long)t * line;
        int32_t w = k[t];
        for (long i = 0; i < line; i++) acc[i] += s[i] * w;
    }
    for (long i = 0; i < line; i++) dst[i] = clip8(acc[i]);
}

/* rows [row0, row0 + rows) of src, resampled along x: transposed so that
 * the taps run over whole lines as in the vertical pass, then back. */
static int horizontal(const uint8_t *src, int W, int C, int row0, int rows, const coeffs *c, int outW, uint8_t *dst)
{
    long line = (long)rows * C;
    uint8_t *t_in = malloc((size_t)W * (size_t)line), *t_out = malloc((size_t)outW * (size_t)line);
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)line);
    if (t_in && t_out && acc) {
        transpose(src + (long)row0 * W * C, rows, W, C, t_in);
        for (int xx = 0; xx < outW; xx++)
            weighted_lines(t_in + (long)c->bounds[2 * xx] * line, line, c->k + (long)xx * c->ksize, c->bounds[2 * xx + 1],
                           acc, t_out + (long)xx * line);
        transpose(t_out, outW, rows, C, dst);
    }
    int ok = t_in && t_out && acc;
    free(t_in), free(t_out), free(acc);
    return ok;
}

/* One output row at a time, from the input rows its taps cover. */
static void vertical(const uint8_t *src, int W, int C, int shift, const coeffs *c, int outH, uint8_t *dst, int32_t *acc)
{
    long row = (long)W * C;
    for (int yy = 0; yy < outH; yy++)
        weighted_lines(src + ((long)c->bounds[2 * yy] - shift) * row, row, c->k + (long)yy * c->ksize, c->bounds[2 * yy + 1],
                       acc, dst + (long)yy * row);
}

mst_status mst_pil_resize(const uint8_t *src, int H, int W, int C, int outH, int outW, mst_filter f, uint8_t *dst,
                          mst_error *err)
{
    if (H < 1 || W < 1 || outH < 1 || outW < 1 || C < 1 || C > 4)
        return mst_fail(err, MST_ERR_ARG, "cannot resize a %dx%dx%d image to %dx%d", H, W, C, outH, outW);
    coeffs cx = {0}, cy = {0};
    uint8_t *tmp = NULL;
    mst_status r = MST_OK;
    if (!precompute(W, outW, f, &cx) || !precompute(H, outH, f, &cy)) {
        r = mst_fail(err, MST_ERR_NOMEM, "out of memory resizing a %dx%d image", H, W);
        goto done;
    }
    /* the horizontal pass covers only the rows the vertical pass reads */
    int first = cy.bounds[0], last = cy.bounds[2 * outH - 2] + cy.bounds[2 * outH - 1];
    const uint8_t *mid = src;
    int shift = 0;
    if (outW != W) {
        tmp = malloc((size_t)(last - first) * (size_t)outW * (size_t)C);
        if (!tmp) {
            r = mst_fail(err, MST_ERR_NOMEM, "out of memory resizing a %dx%d image", H, W);
            goto done;
        }
        if (!horizontal(src, W, C, first, last - first, &cx, outW, tmp)) {
            r = mst_fail(err, MST_ERR_NOMEM, "out of memory resizing a %dx%d image", H, W);
            goto done;
        }
        mid = tmp, shift = first;
    }
    if (outH != H) {
        int32_t *acc = malloc(sizeof(int32_t) * (size_t)outW * (size_t)C);
        if (!acc) {
            r = mst_fail(err, MST_ERR_NOMEM, "out of memory resizing a %dx%d image", H, W);
            goto done;
        }
        vertical(mid, outW, C, shift, &cy, outH, dst, acc);
        free(acc);
    } else {
        for (long i = 0; i < (long)outH * outW * C; i++) dst[i] = mid[i];
    }
done:
    free(cx.bounds), free(cx.k), free(cy.bounds), free(cy.k), free(tmp);
    return r;
}

void mst_resize_shorter(int H, int W, int size, int *outH, int *outW)
{
    if (W <= H) {
        *outW = size;
        *outH = (int)((double)size * H / W);
    } else {
        *outH = size;
        *outW = (int)((double)size * W / H);
    }
}

int mst_center_offset(int len, int crop)
{
    int mode = fegetround();
    fesetround(FE_TONEAREST);
    int off = (int)nearbyint((len - crop) / 2.0);
    fesetround(mode);
    return off;
}
