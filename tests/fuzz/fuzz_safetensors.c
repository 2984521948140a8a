/* A safetensors checkpoint through mst_model_load: the header, the tensor
 * table, the metadata and the model built from them. */
#include "fuzz_file.h"
#include "mst/mst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    mst_model *m = NULL;
    mst_error err;
    mst_load_opts o = {.img_size = 0};
    if (mst_model_load(path, &o, &m, &err) == MST_OK) mst_model_free(m);
    close(fd);
    return 0;
}
