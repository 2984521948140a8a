/* What the C benchmarks share: a monotonic clock, and their REPS argument. */
#ifndef MST_BENCH_COMMON_H
#define MST_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* argv[1] as a count of timed repetitions (default 5); exits with usage on anything else. */
static inline int bench_reps(int argc, char **argv, const char *name)
{
    char *end = NULL;
    long reps = argc > 1 ? strtol(argv[1], &end, 10) : 5;
    if (argc > 2 || (argc > 1 && (*end || reps < 1 || reps > 100000))) {
        fprintf(stderr, "usage: %s [REPS >= 1]\n", name);
        exit(2);
    }
    return (int)reps;
}

#endif
