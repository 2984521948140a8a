/* The fuzzer's bytes as a file, for the readers that take a path as mst
 * does: a memfd, opened by its /proc/self/fd name. */
#ifndef MST_FUZZ_FILE_H
#define MST_FUZZ_FILE_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Returns the descriptor to close after the reader; `path` names it. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t n)
{
    int fd = memfd_create("fuzz", 0);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size)) abort();
    snprintf(path, n, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
