/* data.pkl alone, without a container to get past: every storage it names
 * resolves to the float 0.5 repeated (up to 1 MiB; positive, so thresholds
 * pass), so that mutated tensor records reach the state_dict's strided
 * copies and the model built from them. */
#include <stdlib.h>
#include <string.h>

#include "host/error.h"
#include "host/model/model.h"
#include "host/model/pth.h"

static float halves[1 << 18];

static mst_status storage(void *ctx, mst_pk_storage *st, mst_error *err)
{
    (void)ctx;
    if ((uint64_t)st->numel * (uint64_t)st->elem_size > sizeof halves)
        return mst_fail(err, MST_ERR_FORMAT, "storage over 1 MiB");
    if (halves[0] == 0.0f)
        for (size_t i = 0; i < sizeof halves / sizeof halves[0]; i++) halves[i] = 0.5f;
    st->data = (const uint8_t *)halves;
    return MST_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mst_safetensors st = {0};
    mst_error err;
    mst_model *m = NULL;
    st.path = strdup("fuzz.pkl");
    if (mst_pth_state_dict(data, size, "data.pkl", storage, NULL, sizeof halves, &st, &err) == MST_OK &&
        mst_model_from_table(&st, NULL, &m, &err) == MST_OK)
        mst_model_free(m);
    mst_st_close(&st);
    return 0;
}
