/* A .npy input file, as mst run reads one. */
#include "fuzz_file.h"
#include "host/data/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    mst_npy x;
    mst_error err;
    if (mst_npy_read(path, &x, &err) == MST_OK) mst_npy_free(&x);
    close(fd);
    return 0;
}
