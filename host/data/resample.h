/* Pillow's resize, reproduced to the bit: separable antialiased filters
 * (support widened by the downscale factor), coefficients normalised and
 * turned into 22-bit fixed point, a horizontal pass into 8-bit rows, then a
 * vertical pass (Pillow 9's Resample.c). torchvision's Resize and CenterCrop
 * on PIL images are this plus the size and crop rules below. */
#ifndef MST_RESAMPLE_H
#define MST_RESAMPLE_H

#include <stdint.h>

#include "mst/mst.h"

typedef enum { MST_FILTER_BILINEAR, MST_FILTER_BICUBIC } mst_filter;

/* src [H][W][C] -> dst [outH][outW][C], C in 1..4. */
mst_status mst_pil_resize(const uint8_t *src, int H, int W, int C, int outH, int outW, mst_filter f, uint8_t *dst,
                          mst_error *err);

/* torchvision's Resize(size) for an int size: the shorter side becomes
 * `size`, the longer int(size * long / short). */
void mst_resize_shorter(int H, int W, int size, int *outH, int *outW);

/* torchvision's CenterCrop offset: int(round((len - crop) / 2.0)), Python's
 * round (halves to even). */
int mst_center_offset(int len, int crop);

#endif
