/* The input pipeline alone: decode (libjpeg-turbo / libspng) and the eval
 * transform (Pillow-exact resize, centre crop, normalisation) of every image
 * in a folder tree, on one thread: images per second per core, and the split
 * between decoding and transforming.
 *
 *   build/bench_input DIR [SIZE] [CROP_PCT] [bicubic|bilinear] [PASSES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "host/data/dataset.h"
#include "host/data/transform.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_input DIR [SIZE] [CROP_PCT] [bicubic|bilinear] [PASSES]\n");
        return 2;
    }
    int size = argc > 2 ? atoi(argv[2]) : 224, passes = argc > 5 ? atoi(argv[5]) : 1;
    double crop = argc > 3 ? atof(argv[3]) : 0.875;
    float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    mst_transform tf = {.channels = 3, .size = size, .mean = mean, .std = std, .kind = MST_RESIZE_PIL, .crop_pct = crop,
                        .filter = argc > 4 && !strcmp(argv[4], "bilinear") ? MST_FILTER_BILINEAR : MST_FILTER_BICUBIC};
    mst_dataset d;
    mst_error err = {0};
    if (mst_dataset_open(argv[1], &d, &err) != MST_OK) {
        fprintf(stderr, "bench_input: %s\n", err.msg);
        return 1;
    }
    float *x = malloc(sizeof(float) * 3 * (size_t)size * size);
    double t_decode = 0, t_transform = 0, pixels = 0;
    long n = 0, bad = 0;
    for (int p = 0; p < passes; p++)
        for (long i = 0; i < d.count; i++) {
            mst_image im;
            double t0 = bench_now();
            mst_status r = mst_dataset_image(&d, i, &im, &err);
            if (r == MST_OK) r = mst_image_to_channels(&im, 3, &err);
            double t1 = bench_now();
            if (r == MST_OK) r = mst_transform_apply(&tf, im.pixels, im.height, im.width, x, &err);
            double t2 = bench_now();
            if (r == MST_OK) pixels += (double)im.height * im.width, n++;
            else bad++;
            mst_image_free(&im);
            t_decode += t1 - t0, t_transform += t2 - t1;
        }
    printf("%ld images of %.3f Mpixel on average, %ld unreadable, %d pass(es), one thread\n", n,
           pixels / (n ? n : 1) / 1e6, bad, passes);
    printf("decode    %8.3f ms/image\ntransform %8.3f ms/image (resize to %d/%.3f, crop %d, %s)\n", 1e3 * t_decode / n,
           1e3 * t_transform / n, size, crop, size, tf.filter == MST_FILTER_BICUBIC ? "bicubic" : "bilinear");
    printf("total     %8.3f ms/image = %.1f images/s per core\n", 1e3 * (t_decode + t_transform) / n,
           n / (t_decode + t_transform));
    free(x);
    mst_dataset_close(&d);
    return 0;
}
