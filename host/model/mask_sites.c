/* Mask-site lists as users write them ("q,k,attn,fc1", "all"). */
#include <stdio.h>
#include <string.h>

#include "../error.h"
#include "mst/mst.h"

static const char *const NAMES[] = {"q", "k", "attn", "fc1", "fc2"};
#define NUM_NAMES (int)(sizeof NAMES / sizeof NAMES[0])

static unsigned site_bit(const char *name, size_t len)
{
    if (len == 3 && !strncmp(name, "all", 3)) return MST_MASK_ALL;
    for (int i = 0; i < NUM_NAMES; i++)
        if (strlen(NAMES[i]) == len && !strncmp(name, NAMES[i], len)) return 1u << i;
    return 0;
}

mst_status mst_mask_sites_parse(const char *list, unsigned *out, mst_error *err)
{
    unsigned sites = 0;
    const char *p = list ? list : "";
    for (;;) {
        size_t len = strcspn(p, ",");
        unsigned bit = site_bit(p, len);
        if (!bit)
            return mst_fail(err, MST_ERR_ARG, "mask site \"%.*s\" is not one of q, k, attn, fc1, fc2 or all",
                            (int)(len > 40 ? 40 : len), p);
        sites |= bit;
        if (!p[len]) break;
        p += len + 1;
    }
    *out = sites;
    return MST_OK;
}

const char *mst_mask_sites_name(unsigned sites, char *buf, size_t n)
{
    size_t at = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < NUM_NAMES; i++)
        if (sites & (1u << i) && at < n) at += (size_t)snprintf(buf + at, n - at, "%s%s", at ? "," : "", NAMES[i]);
    return buf;
}
