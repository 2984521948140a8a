/* Image preprocessing: 8-bit pixels to the normalised float tensor a model
 * takes, as its checkpoint metadata describes. */
#ifndef MST_TRANSFORM_H
#define MST_TRANSFORM_H

#include <stdint.h>

#include "mst/mst.h"

typedef struct {
    int channels;        /* the model's input channels */
    int size;            /* output height and width */
    const float *mean;   /* [channels], of pixels scaled to [0, 1] */
    const float *std;    /* [channels] */
} mst_transform;

/* pix: [H][W][C] bytes (C = channels) -> out: [channels][size][size].
 * Bilinear resize with half-pixel centres and no antialiasing (torch's
 * F.interpolate(mode="bilinear", align_corners=False), what torchvision's
 * Resize does to tensors when enlarging), then (x/255 - mean) / std. */
void mst_transform_bilinear(const mst_transform *t, const uint8_t *pix, int H, int W, float *out);

#endif
