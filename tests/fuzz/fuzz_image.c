/* A PNG or JPEG image, decoded, converted to 1 and 3 channels, then put
 * through the eval transforms (Pillow bicubic with ImageNet's crop, bilinear
 * without one, the tensor resize) at a few sizes. */
#include "fuzz_file.h"
#include "host/data/image.h"
#include "host/data/transform.h"

static void transforms(const mst_image *im)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    const mst_transform ts[] = {
        {.channels = im->channels, .size = 7, .mean = mean, .std = std, .kind = MST_RESIZE_PIL, .filter = MST_FILTER_BICUBIC, .crop_pct = 0.875},
        {.channels = im->channels, .size = 32, .mean = mean, .std = std, .kind = MST_RESIZE_PIL, .filter = MST_FILTER_BILINEAR, .crop_pct = 1.0},
        {.channels = im->channels, .size = 5, .mean = mean, .std = std, .kind = MST_RESIZE_TENSOR_BILINEAR},
    };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        float *out = malloc(sizeof(float) * (size_t)(ts[i].channels * ts[i].size * ts[i].size));
        mst_error err;
        if (out) mst_transform_apply(&ts[i], im->pixels, im->height, im->width, out, &err);
        free(out);
    }
}

/* The transform's cost is that of the resize before the crop: for a 64010 x
 * 12 JPEG, a 170693 x 32 bilinear image (0.4 s natively, as Pillow; over
 * 10 s under the fuzzer's instrumentation). The channel conversion's is the
 * pixel count: a 96-byte JPEG claiming 12049 x 9225 gray pixels (under the
 * 2^27 limit) converts in well under a second natively, in over 10 s
 * instrumented; an 11530 x 255 CMYK JPEG (2.9 Mpx) goes through the nine
 * conversions and transforms here in 0.3 s natively, 4.7 s instrumented,
 * half the timeout. Images thinner than 1:64 or over 1 Mpx are decoded only
 * (by the uninstrumented libjpeg-turbo and libspng), so that a slow unit is
 * a real hang and the CI smoke does not fail on a slow machine. */
static int cheap(const mst_image *im)
{
    long lo = im->width < im->height ? im->width : im->height, hi = im->width + im->height - lo;
    return hi <= 64 * lo && (long)im->width * im->height <= (1L << 20);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    mst_image im;
    mst_error err;
    if (mst_image_read(path, &im, &err) == MST_OK) {
        if (cheap(&im)) {
            transforms(&im);
            for (int c = 1; c <= 3; c += 2)
                if (mst_image_to_channels(&im, c, &err) == MST_OK) transforms(&im);
        }
        mst_image_free(&im);
    }
    close(fd);
    return 0;
}
