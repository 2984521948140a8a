/* Percentiles of a sample, as numpy.percentile's default ("linear") computes
 * them: the value at rank p/100 * (n - 1) of the sorted sample, interpolated
 * between its neighbours. */
#ifndef MST_PERCENTILE_H
#define MST_PERCENTILE_H

/* x: n >= 1 values (sorted in place); p in [0, 100]. */
double mst_percentile(double *x, int n, double p);

#endif
