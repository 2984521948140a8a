#include "error.h"

#include <stdarg.h>
#include <stdio.h>

const char *mst_strerror(mst_status s)
{
    switch (s) {
    case MST_OK: return "ok";
    case MST_ERR_IO: return "i/o error";
    case MST_ERR_FORMAT: return "malformed file";
    case MST_ERR_MISSING: return "missing tensor or field";
    case MST_ERR_SHAPE: return "shape mismatch";
    case MST_ERR_VALUE: return "invalid value";
    case MST_ERR_ARG: return "invalid argument";
    case MST_ERR_NOMEM: return "out of memory";
    case MST_ERR_UNSUPPORTED: return "unsupported";
    case MST_ERR_DEVICE: return "device error";
    }
    return "unknown status";
}

mst_status mst_fail(mst_error *err, mst_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = s;
    }
    return s;
}
