/* Window geometry of shifted-window attention, shared by both backends.
 * A stage's image of res x res tokens is rolled by (-shift, -shift), cut into
 * (res/w)^2 windows (row-major), each of w*w tokens (row-major). */
#ifndef MST_COMMON_WINDOW_H
#define MST_COMMON_WINDOW_H

#include "mst_math.h"

/* Token index (row-major in the un-rolled image) of token `tok` of window
 * `win`. Rolling by -s means rolled[y] = original[(y + s) mod res]; the reverse
 * (merge windows, roll back by +s) writes to the same index. */
MST_HD static inline int mst_window_token(int win, int tok, int res, int w, int shift)
{
    int per_row = res / w;
    int y = (win / per_row) * w + tok / w;
    int x = (win % per_row) * w + tok % w;
    y = (y + shift) % res;
    x = (x + shift) % res;
    return y * res + x;
}

/* Which of the three strips [0, res-w), [res-w, res-s), [res-s, res) a rolled
 * coordinate lies in; pairs from different regions get the shift mask. */
MST_HD static inline int mst_shift_strip(int c, int res, int w, int shift)
{
    return c < res - w ? 0 : (c < res - shift ? 1 : 2);
}

MST_HD static inline int mst_shift_region(int win, int tok, int res, int w, int shift)
{
    int per_row = res / w;
    int y = (win / per_row) * w + tok / w;
    int x = (win % per_row) * w + tok % w;
    return 3 * mst_shift_strip(y, res, w, shift) + mst_shift_strip(x, res, w, shift);
}

/* The additive shift mask of spec section 3 for (query, key) in window win. */
MST_HD static inline float mst_shift_mask(int win, int qtok, int ktok, int res, int w, int shift)
{
    if (shift == 0) return 0.0f;
    return mst_shift_region(win, qtok, res, w, shift) == mst_shift_region(win, ktok, res, w, shift)
               ? 0.0f
               : -100.0f;
}

/* Row of the relative position bias table for query token qi, key token ki. */
MST_HD static inline int mst_rel_index(int qi, int ki, int w)
{
    int dy = qi / w - ki / w, dx = qi % w - ki % w;
    return (dy + w - 1) * (2 * w - 1) + (dx + w - 1);
}

#endif
