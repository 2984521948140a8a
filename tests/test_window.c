/* Shifted-window geometry against Swin's own construction: roll, partition,
 * reverse, the -100 shift mask from region labels, and the bias index. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "kernels/common/mst_window.h"

typedef struct {
    int res, w, shift;
} geom;

static const geom geoms[] = {{8, 4, 2}, {14, 7, 3}, {12, 3, 1}, {7, 7, 0}, {16, 4, 0}, {6, 2, 1}, {56, 7, 3}};

/* torch.roll(x, -s) then window_partition, done on an image of token ids. */
static void naive_partition(const geom *g, int *win_tok)
{
    int per = g->res / g->w, n = g->w * g->w;
    for (int y = 0; y < g->res; y++)
        for (int x = 0; x < g->res; x++) {
            int id = ((y + g->shift) % g->res) * g->res + (x + g->shift) % g->res; /* rolled[y][x] */
            int win = (y / g->w) * per + x / g->w, tok = (y % g->w) * g->w + x % g->w;
            win_tok[win * n + tok] = id;
        }
}

Test(window, partition_roll_and_reverse)
{
    for (size_t i = 0; i < sizeof geoms / sizeof geoms[0]; i++) {
        const geom *g = &geoms[i];
        int N = g->res * g->res, n = g->w * g->w, nw = N / n;
        int *want = malloc(sizeof(int) * (size_t)N), *seen = calloc((size_t)N, sizeof(int));
        naive_partition(g, want);
        for (int win = 0; win < nw; win++)
            for (int tok = 0; tok < n; tok++) {
                int got = mst_window_token(win, tok, g->res, g->w, g->shift);
                cr_expect_eq(got, want[win * n + tok], "res %d w %d s %d win %d tok %d", g->res, g->w, g->shift,
                             win, tok);
                seen[got]++;
            }
        /* reverse + roll back writes every token exactly once: a permutation */
        for (int t = 0; t < N; t++) cr_expect_eq(seen[t], 1, "token %d written %d times", t, seen[t]);
        free(want);
        free(seen);
    }
}

/* Swin: label the rolled image by slices (0,-w), (-w,-s), (-s,None) per axis. */
static int swin_label(int y, int x, const geom *g)
{
    int ly = y < g->res - g->w ? 0 : (y < g->res - g->shift ? 1 : 2);
    int lx = x < g->res - g->w ? 0 : (x < g->res - g->shift ? 1 : 2);
    return ly * 3 + lx;
}

Test(window, shift_mask_matches_swin)
{
    int masked = 0;
    for (size_t i = 0; i < sizeof geoms / sizeof geoms[0]; i++) {
        const geom *g = &geoms[i];
        int per = g->res / g->w, n = g->w * g->w;
        for (int win = 0; win < per * per; win++)
            for (int q = 0; q < n; q++)
                for (int k = 0; k < n; k++) {
                    int qy = (win / per) * g->w + q / g->w, qx = (win % per) * g->w + q % g->w;
                    int ky = (win / per) * g->w + k / g->w, kx = (win % per) * g->w + k % g->w;
                    float want = g->shift && swin_label(qy, qx, g) != swin_label(ky, kx, g) ? -100.0f : 0.0f;
                    cr_expect_eq(mst_shift_mask(win, q, k, g->res, g->w, g->shift), want);
                    masked += want != 0.0f;
                }
    }
    cr_expect(masked > 0);
}

/* Swin's relative_position_index: (coords_q - coords_k + w - 1), row * (2w-1) + col. */
Test(window, relative_bias_index)
{
    for (int w = 1; w <= 8; w++)
        for (int q = 0; q < w * w; q++)
            for (int k = 0; k < w * w; k++) {
                int dy = q / w - k / w + w - 1, dx = q % w - k % w + w - 1;
                int idx = mst_rel_index(q, k, w);
                cr_expect_eq(idx, dy * (2 * w - 1) + dx);
                cr_expect(idx >= 0 && idx < (2 * w - 1) * (2 * w - 1));
            }
    cr_expect_eq(mst_rel_index(0, 0, 7), 6 * 13 + 6); /* same token: the centre of the table */
}
