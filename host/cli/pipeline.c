/* The input pipeline of mst eval: J worker threads decode and transform the
 * images of upcoming batches into a ring of batch buffers while the engine
 * runs the current one. Image i always lands in the same place of the same
 * batch, so results do not depend on J. */
#include <pthread.h>
#include <stdlib.h>

#include "cli.h"

struct cli_pipeline {
    mst_engine *e;              /* owns the batch buffers' memory (pinned on CUDA) */
    const mst_dataset *d;
    const mst_transform *tf;
    long lo, hi, img;           /* images [lo, hi); floats per image */
    int batch, slots, workers;
    float *x;                   /* [slots][batch][img] */
    int *ok;                    /* [slots][batch] */
    int *done;                  /* [slots] images finished in the slot's batch */
    long next_image;            /* the next image a worker takes */
    long released;              /* batches the engine has finished with */
    long served;                /* batches handed to the engine */
    long skipped;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t *threads;
};

static long batch_of(const cli_pipeline *p, long i) { return (i - p->lo) / p->batch; }

static int batch_size(const cli_pipeline *p, long b)
{
    long first = p->lo + b * p->batch;
    return (int)(p->hi - first < p->batch ? p->hi - first : p->batch);
}

/* Takes the next image whose slot is free; -1 when all are taken or stopping. */
static long take(cli_pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    long i = -1;
    while (!p->stop && p->next_image < p->hi && batch_of(p, p->next_image) >= p->released + p->slots)
        pthread_cond_wait(&p->cv, &p->mu);
    if (!p->stop && p->next_image < p->hi) i = p->next_image++;
    pthread_mutex_unlock(&p->mu);
    return i;
}

static void prepare(cli_pipeline *p, long i)
{
    long b = batch_of(p, i);
    int slot = (int)(b % p->slots), at = (int)((i - p->lo) % p->batch);
    int ok = cli_prepare(p->d, i, p->tf, p->x + ((long)slot * p->batch + at) * p->img);
    pthread_mutex_lock(&p->mu);
    p->ok[slot * p->batch + at] = ok;
    p->skipped += !ok;
    p->done[slot]++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void *worker(void *arg)
{
    cli_pipeline *p = arg;
    for (long i; (i = take(p)) >= 0;) prepare(p, i);
    return NULL;
}

cli_pipeline *cli_pipeline_start(mst_engine *e, const mst_dataset *d, const mst_transform *tf, long lo, long hi,
                                 int batch, int workers)
{
    cli_pipeline *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    *p = (cli_pipeline){.e = e, .d = d, .tf = tf, .lo = lo, .hi = hi, .batch = batch, .workers = 0,
                        .img = (long)tf->channels * tf->size * tf->size, .next_image = lo};
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    /* enough batches ahead that every worker has images to take, and one to spare */
    p->slots = workers > 0 ? 2 + (workers + batch - 1) / batch : 1;
    p->slots = p->slots < 16 ? p->slots : 16;
    if (mst_engine_host_alloc(e, sizeof(float) * (size_t)p->slots * (size_t)batch * (size_t)p->img, (void **)&p->x,
                              NULL) != MST_OK)
        p->x = NULL;
    p->ok = calloc((size_t)p->slots * (size_t)batch, sizeof(int));
    p->done = calloc((size_t)p->slots, sizeof(int));
    p->threads = calloc((size_t)(workers > 0 ? workers : 1), sizeof(pthread_t));
    if (!p->x || !p->ok || !p->done || !p->threads) {
        cli_pipeline_stop(p, NULL);
        return NULL;
    }
    for (int w = 0; w < workers && pthread_create(&p->threads[w], NULL, worker, p) == 0; w++)
        p->workers = w + 1; /* where a thread cannot start, run with fewer */
    return p;
}

int cli_pipeline_next(cli_pipeline *p, long *first, int *n, float **x, int **ok)
{
    long b = p->served;
    if (p->lo + b * p->batch >= p->hi) return 0;
    int slot = (int)(b % p->slots), size = batch_size(p, b);
    if (p->workers == 0) /* no threads: decode here */
        while (p->next_image < p->hi && batch_of(p, p->next_image) == b) prepare(p, p->next_image++);
    pthread_mutex_lock(&p->mu);
    while (p->done[slot] < size) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    *first = p->lo + b * p->batch;
    *n = size;
    *x = p->x + (long)slot * p->batch * p->img;
    *ok = p->ok + slot * p->batch;
    p->served++;
    return 1;
}

void cli_pipeline_release(cli_pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    p->done[p->released % p->slots] = 0;
    p->released++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void cli_pipeline_stop(cli_pipeline *p, long *skipped)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int w = 0; w < p->workers; w++) pthread_join(p->threads[w], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    if (skipped) *skipped = p->skipped;
    mst_engine_host_free(p->e, p->x);
    free(p->ok), free(p->done), free(p->threads), free(p);
}
