/* mst's command line: the fuzzer's bytes split at NULs into arguments, parsed
 * as every command parses them, then the list options (--report-steps,
 * --mean, --std) parsed as mst eval does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/cli/cli.h"

enum { MAX_ARGS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1), *argv[MAX_ARGS + 2] = {"mst"};
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    int argc = 1;
    for (char *p = buf; argc <= MAX_ARGS && p <= buf + size; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;
    cli_args a;
    mst_error err;
    if (cli_args_parse(argc, argv, &a, &err) == MST_OK) {
        int T = a.eo.timesteps, n, *steps = malloc(sizeof(int) * (size_t)T);
        float v[4];
        if (steps) cli_steps_parse(a.report_steps, T, steps, &n, &err);
        for (int C = 1; C <= 4; C++) {
            if (a.mean) cli_values_parse("mean", a.mean, C, 0, v, &err);
            if (a.std) cli_values_parse("std", a.std, C, 1, v, &err);
        }
        free(steps);
    }
    free(buf);
    return 0;
}
