/* A .pth file as mst_model_load reads one: the zip container, data.pkl,
 * the state_dict's tensors, then the model built from them. */
#include <stdlib.h>
#include <string.h>

#include "host/model/model.h"
#include "host/model/pth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mst_safetensors st = {0};
    mst_error err;
    mst_model *m = NULL;
    st.path = strdup("fuzz.pth");
    if (mst_pth_parse(data, size, &st, &err) == MST_OK && mst_model_from_table(&st, NULL, &m, &err) == MST_OK)
        mst_model_free(m);
    mst_st_close(&st);
    return 0;
}
