/* mst eval's accuracy tallies and their reports: the table on stdout, the
 * per-class table, and the results file (JSON or CSV) in timm's validate.py
 * terms plus the per-step arrays. */
#ifndef MST_CLI_RESULTS_H
#define MST_CLI_RESULTS_H

#include "cli.h"

typedef struct {
    int n, *step;         /* reported steps, 1-based, ascending */
    long *top1, *top5;    /* correct counts per reported step */
    int K;                /* classes */
    long *seen, *hit;     /* per class: images, and top-1 hits per reported step [class][step] */
} tally;

/* "1,2,8" -> steps in [1, T]; NULL: powers of two up to T, and T. */
void tally_init(tally *r, const char *list, int T, int K);
void tally_free(tally *r);
/* cum: [T][n][K] cumulative logits (T == 1: ANN) of images with these labels. */
void tally_count(tally *r, const float *cum, int n, const int *labels, int T);

typedef struct {
    const cli_args *a;
    const mst_model *m;
    const char *device;
    const char *mask_sites; /* the sites the engine masks, "q,k,attn" */
    char **names;        /* class names from --labels, or NULL */
    long images;         /* images counted */
    double rate;         /* images per second */
    const mst_stats *st; /* --stats, or NULL */
    /* what mst merge adds up (the results file's "tallies"): the dataset
       positions [lo, hi) of `total`, images that could not be read, and the
       raw spike counters behind st with the images they cover */
    long lo, hi, total, skipped;
    const uint64_t *counts;
    size_t num_counts;
    uint64_t counted;
} report;

void print_table(const tally *r, const report *rp);
void print_per_class(const tally *r, const report *rp);
void write_results(const tally *r, const report *rp);

#endif
