/* A .pth file as mst_model_load reads one: the zip container, data.pkl,
 * the state_dict's tensors, the metadata convert_pth.py would add (here
 * with the dataset the file name gives), then the model built from them. */
#include <stdlib.h>
#include <string.h>

#include "host/model/checkpoint.h"
#include "host/model/model.h"
#include "host/model/pth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mst_safetensors st = {0};
    mst_error err;
    mst_model *m = NULL;
    st.path = strdup("fuzz_cifar10.pth");
    if (mst_pth_parse(data, size, &st, &err) == MST_OK && mst_checkpoint_pth_metadata(&st, NULL, &err) == MST_OK &&
        mst_model_from_table(&st, NULL, &m, &err) == MST_OK)
        mst_model_free(m);
    mst_st_close(&st);
    return 0;
}
