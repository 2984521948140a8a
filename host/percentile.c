#include "percentile.h"

#include <math.h>
#include <stdlib.h>

static int ascending(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double mst_percentile(double *x, int n, double p)
{
    qsort(x, (size_t)n, sizeof(double), ascending);
    double rank = p / 100.0 * (n - 1);
    int lo = (int)floor(rank), hi = lo + 1 < n ? lo + 1 : lo;
    return x[lo] + (rank - lo) * (x[hi] - x[lo]);
}
