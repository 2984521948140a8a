/* Internal: filling an mst_error. */
#ifndef MST_HOST_ERROR_H
#define MST_HOST_ERROR_H

#include "mst/mst.h"

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
mst_status mst_fail(mst_error *err, mst_status s, const char *fmt, ...);

#endif
