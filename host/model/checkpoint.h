/* Any checkpoint mst reads (safetensors, or torch.save's .pth) as one tensor
 * table with __metadata__, so that what follows loading is one code path. */
#ifndef MST_CHECKPOINT_H
#define MST_CHECKPOINT_H

#include "safetensors.h"

/* Opens `path` by its content. A .pth gets the metadata tools/convert_pth.py
 * would write: the dataset's (opts->dataset, else the file name's
 * "imagenet", "cifar100" or "cifar10"), the architecture, and img_size when
 * opts gives one. A safetensors file carries its own: opts->dataset is then
 * an error. */
mst_status mst_checkpoint_open(const char *path, const mst_load_opts *opts, mst_safetensors *st, mst_error *err);

/* What mst_checkpoint_open adds to an opened .pth: the metadata
 * tools/convert_pth.py would write (architecture, img_size, dataset). */
mst_status mst_checkpoint_pth_metadata(mst_safetensors *st, const mst_load_opts *opts, mst_error *err);

#endif
