/* Checkpoints of named shapes with weights from a seeded generator, so that
 * `mst bench` needs no download: every tensor a real checkpoint of that
 * shape has, random but sized so that the IF sites fire at plausible rates.
 * Their predictions mean nothing. */
#ifndef MST_SYNTH_H
#define MST_SYNTH_H

#include <stdint.h>

#include "mst/mst.h"

typedef struct {
    const char *name;
    int img_size, patch, in_chans, embed_dim, num_stages, depths[8], heads[8], window, mlp_ratio, num_classes, mlp_bn;
} mst_synth_arch;

/* "swin-t" (the released checkpoints' shape), "fmnist" (the shipped
 * models') or "grid28" (28x28 tokens, single channel, 56x56 images); NULL
 * for another name. */
const mst_synth_arch *mst_synth_find(const char *name);
/* A comma-separated list of the names, for messages. */
const char *mst_synth_names(void);

/* Writes the checkpoint to `path` (safetensors with __metadata__). */
mst_status mst_synth_write(const mst_synth_arch *a, uint64_t seed, const char *path, mst_error *err);

#endif
