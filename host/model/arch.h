#ifndef MST_ARCH_H
#define MST_ARCH_H

#include "mst/mst.h"
#include "safetensors.h"

/* Fills the shape fields of *a and allocates its stage table (*out). */
mst_status mst_infer_arch(const mst_safetensors *st, int img_flag, mst_arch *a, mst_stage_info **out,
                          mst_error *err);

#endif
