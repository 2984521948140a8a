/* torch.save checkpoints (.pth): the zip format of torch >= 1.6, read into
 * the same tensor table as a safetensors file, executing nothing. */
#ifndef MST_PTH_H
#define MST_PTH_H

#include <stddef.h>
#include <stdint.h>

#include "pickle.h"
#include "safetensors.h"

/* Whether buf starts like a torch.save file (zip, or the legacy formats,
 * which mst_pth_parse refuses by name). */
int mst_pth_sniff(const uint8_t *buf, size_t size);

/* The state_dict of buf[0, size) (bare, or a training checkpoint's "model",
 * "module." prefixes dropped) as st's tensors, copied contiguous into
 * st->owned. st->path must be set (errors name it); st is closed by
 * mst_st_close whatever the outcome. */
mst_status mst_pth_parse(const uint8_t *buf, size_t size, mst_safetensors *st, mst_error *err);
/* Resolves a storage's key to its bytes: must set st->data to numel *
 * elem_size readable, checked bytes, or fail. */
typedef mst_status (*mst_pth_storage_fn)(void *ctx, mst_pk_storage *st, mst_error *err);

/* The part after the container: data.pkl's n bytes unpickled, the storages
 * of the state_dict's tensors resolved by `storage`, the tensors copied into
 * st (at most about twice file_size bytes of them). */
mst_status mst_pth_state_dict(const uint8_t *pkl, size_t n, const char *what, mst_pth_storage_fn storage, void *ctx,
                              size_t file_size, mst_safetensors *st, mst_error *err);
mst_status mst_pth_open(const char *path, mst_safetensors *st, mst_error *err);

#endif
