/* Bytes a backend holds, and the most it has held (mst bench's peak memory):
 * every allocation and release of its buffers and scratch goes through here. */
#ifndef MST_ALLOC_LOG_H
#define MST_ALLOC_LOG_H

#include <stddef.h>
#include <stdlib.h>

typedef struct {
    const void **ptr;
    size_t *size;
    int n, cap;
    size_t now, peak;
} mst_alloc_log;

static inline void mst_alloc_log_add(mst_alloc_log *l, const void *p, size_t bytes)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        const void **pp = (const void **)realloc((void *)l->ptr, sizeof(void *) * (size_t)cap);
        size_t *ss = pp ? (size_t *)realloc(l->size, sizeof(size_t) * (size_t)cap) : NULL;
        if (pp) l->ptr = pp;
        if (ss) l->size = ss;
        if (!pp || !ss) return; /* untracked: the peak reads low, nothing breaks */
        l->cap = cap;
    }
    l->ptr[l->n] = p;
    l->size[l->n++] = bytes;
    l->now += bytes;
    if (l->now > l->peak) l->peak = l->now;
}

static inline void mst_alloc_log_remove(mst_alloc_log *l, const void *p)
{
    for (int i = l->n - 1; i >= 0; i--)
        if (l->ptr[i] == p) {
            l->now -= l->size[i];
            l->ptr[i] = l->ptr[--l->n];
            l->size[i] = l->size[l->n];
            return;
        }
}

static inline void mst_alloc_log_free(mst_alloc_log *l)
{
    free((void *)l->ptr);
    free(l->size);
}

#endif
