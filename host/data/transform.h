/* Image preprocessing: 8-bit pixels to the normalised float tensor a model
 * takes, as its checkpoint metadata (or the command line) describes. */
#ifndef MST_TRANSFORM_H
#define MST_TRANSFORM_H

#include <stdint.h>

#include "image.h"
#include "mst/mst.h"
#include "resample.h"

typedef enum {
    /* torch's F.interpolate(mode="bilinear", align_corners=False) on the
       float image straight to size x size (tools/train.py's preprocessing) */
    MST_RESIZE_TENSOR_BILINEAR,
    /* timm / torchvision eval transform on PIL images: the shorter side to
       floor(size / crop_pct) with Pillow's filter, then a centre crop */
    MST_RESIZE_PIL,
} mst_resize_kind;

typedef struct {
    int channels;        /* the model's input channels */
    int size;            /* output height and width */
    const float *mean;   /* [channels], of pixels scaled to [0, 1] */
    const float *std;    /* [channels] */
    mst_resize_kind kind;
    mst_filter filter;   /* MST_RESIZE_PIL */
    double crop_pct;     /* MST_RESIZE_PIL */
} mst_transform;

/* pix: [H][W][C] bytes (C = channels) -> out: [channels][size][size]. */
mst_status mst_transform_apply(const mst_transform *t, const uint8_t *pix, int H, int W, float *out, mst_error *err);

/* MST_RESIZE_PIL before ToTensor: the resized, cropped bytes [size][size][C],
 * what torchvision's Resize + CenterCrop return as a PIL image. */
mst_status mst_transform_pil_pixels(const mst_transform *t, const uint8_t *pix, int H, int W, uint8_t *out,
                                    mst_error *err);

#endif
