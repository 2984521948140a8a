/* An IDX file, gzip-compressed or plain, as the Fashion-MNIST reader takes it. */
#include "fuzz_file.h"
#include "host/data/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    mst_idx x;
    mst_error err;
    if (mst_idx_read(path, &x, &err) == MST_OK) mst_idx_free(&x);
    close(fd);
    return 0;
}
