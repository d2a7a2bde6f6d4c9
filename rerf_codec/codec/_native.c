/* Compiled hot loops of the rerf decoder (FORMAT.md §9.1, §9.7, §10.4, §10.5).
 *
 * Plain C99. Every value is an integer: 64-bit in the range decoder, and integers held in
 * binary64 (all below 2^53, so every operation is exact, as FORMAT.md's "Exactness"
 * paragraphs show) in the transform and the interpolation, so the results are the same bits
 * as the numpy reference path (tests/test_native.py checks both on every conformance vector). Called through ctypes, which releases the GIL: the
 * Python side runs one call per channel on a thread pool.
 *
 * The module also defines an empty Python extension module so that setuptools builds it
 * as part of `pip install` and `import rerf_codec.codec._native` finds the file.
 */
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#define MAX_SAMPLE 16777215LL     /* 2^24 - 1 */
#define MAX_COEFF 536870912LL     /* 2^29 */
#define BLK 8
#define SPAN 11                   /* 8 + 4 taps - 1 */

/* ---------------------------------------------------------------- range decoder (§9.1) */

typedef struct {
    uint64_t lower, range, point;
    int64_t cursor;
    const uint32_t *words;
    int64_t n_words;
} rc_t;

/* One symbol with cumulative table cdf[0..n_sym]; -1 when q >= 2^24 (invalid data). */
static inline int32_t rc_symbol(rc_t *d, const uint32_t *cdf, int32_t n_sym) {
    uint64_t scale = d->range >> 24;
    uint64_t q = (d->point - d->lower) / scale;
    if (q >= (1ULL << 24)) return -1;
    int32_t lo = 0, hi = n_sym - 1; /* largest s with cdf[s] <= q */
    while (lo < hi) {
        int32_t mid = (lo + hi + 1) >> 1;
        if (cdf[mid] <= q) lo = mid; else hi = mid - 1;
    }
    d->lower += scale * cdf[lo];
    d->range = scale * (uint64_t)(cdf[lo + 1] - cdf[lo]);
    if (d->range < (1ULL << 32)) {
        d->lower <<= 32;
        d->range <<= 32;
        d->point <<= 32;
        if (d->cursor < d->n_words) d->point += d->words[d->cursor++];
    }
    return lo;
}

static void rc_load(rc_t *d, const uint32_t *words, int64_t n_words, const uint64_t *state) {
    d->lower = state[0]; d->range = state[1]; d->point = state[2]; d->cursor = (int64_t)state[3];
    d->words = words; d->n_words = n_words;
}

static void rc_store(const rc_t *d, uint64_t *state) {
    state[0] = d->lower; state[1] = d->range; state[2] = d->point; state[3] = (uint64_t)d->cursor;
}

/* state: lower, range, point, cursor. Returns 0, or -1 when q >= 2^24 (invalid data). */
int64_t rerf_rc_decode(const uint32_t *words, int64_t n_words, uint64_t *state, const uint32_t *cdf,
                       int32_t n_sym, int64_t count, int32_t *out) {
    rc_t d;
    rc_load(&d, words, n_words, state);
    for (int64_t k = 0; k < count; k++) {
        int32_t s = rc_symbol(&d, cdf, n_sym);
        if (s < 0) return -1;
        out[k] = s;
    }
    rc_store(&d, state);
    return 0;
}

/* ------------------------------------------------- coefficient classes of one group (§9.5) */

#define N_BANDS 22
#define KIND_UNUSED 0
#define KIND_TRIVIAL 1
#define KIND_COUNT 2

/* Decode the classes of one channel group of one level set (FORMAT.md §9.5) straight into
 * levels[(channel, block) row][f] (int32, rows = cg * nb in C order). Tables: per slot
 * (1 + 22 * kctx: the last-band table, then band-major, context-minor) its kind, lo, and
 * for count tables the offset and size of its cdf in `cdfs`. Classes with |k| >= 16 (they
 * carry mantissa bits) are listed in decoding order in big[] as row * 512 + f. With row_map,
 * row r of the set is written to row row_map[r] of levels (a frame's full level array).
 * scratch: 4 * cg * nb int32. Returns 0; -1 invalid range-coder data; -2 a last-band
 * symbol outside -1..21; -3 symbols for an unused table; -4 a table for a band without
 * symbols; -5 more than big_cap mantissa classes (the caller retries with more room). */
int64_t rerf_decode_group(const uint32_t *words, int64_t n_words, uint64_t *state, int64_t cg, int64_t nb,
                          int64_t kctx, const int32_t *kind, const int32_t *lo, const int64_t *cdf_off,
                          const int32_t *nsym, const uint32_t *cdfs, const int32_t *band_order,
                          const int32_t *band_starts, int32_t *levels, const int64_t *row_map, int64_t *big,
                          int64_t big_cap, int64_t *n_big, int32_t *scratch) {
    rc_t d;
    rc_load(&d, words, n_words, state);
    int64_t m = cg * nb;
    int32_t *last = scratch, *nz = scratch + m, *nz_new = scratch + 2 * m, *rows = scratch + 3 * m;
    int64_t nbig = 0;
    if (m > 0) {
        if (kind[0] == KIND_UNUSED) return -3;
        for (int64_t i = 0; i < m; i++) {
            int32_t v = lo[0];
            if (kind[0] == KIND_COUNT) {
                int32_t s = rc_symbol(&d, cdfs + cdf_off[0], nsym[0]);
                if (s < 0) return -1;
                v += s;
            }
            if (v < -1 || v >= N_BANDS) return -2;
            last[i] = v;
            nz[i] = 0;
        }
    }
    for (int b = 0; b < N_BANDS; b++) {
        int32_t size = band_starts[b + 1] - band_starts[b];
        int32_t prev_size = b ? band_starts[b] - band_starts[b - 1] : 0;
        for (int64_t i = 0; i < m; i++) nz_new[i] = 0;
        for (int k = 0; k < kctx; k++) {
            int64_t slot = 1 + (int64_t)b * kctx + k;
            int64_t nrows = 0;
            for (int64_t i = 0; i < m; i++) {
                if (last[i] < b) continue;
                int32_t ctx = 0;
                if (kctx > 1 && b > 0) {
                    int32_t n = nz[i];
                    ctx = (n > 0) + (4 * n > prev_size) + (2 * n > prev_size);
                }
                if (ctx == k) rows[nrows++] = (int32_t)i;
            }
            if (nrows == 0) {
                if (kind[slot] != KIND_UNUSED) return -4;
                continue;
            }
            if (kind[slot] == KIND_UNUSED) return -3;
            const uint32_t *cdf = cdfs + cdf_off[slot];
            int32_t n_sym = nsym[slot], base = lo[slot], counted = kind[slot] == KIND_COUNT;
            for (int32_t j = 0; j < size; j++) {
                int32_t f = band_order[band_starts[b] + j];
                for (int64_t r = 0; r < nrows; r++) {
                    int32_t v = base;
                    if (counted) {
                        int32_t s = rc_symbol(&d, cdf, n_sym);
                        if (s < 0) return -1;
                        v += s;
                    }
                    int64_t row = rows[r], out_row = row_map ? row_map[row] : row;
                    levels[out_row * 512 + f] = v;
                    if (v) {
                        nz_new[row]++;
                        if (v >= 16 || v <= -16) {
                            if (nbig >= big_cap) return -5;
                            big[nbig++] = out_row * 512 + f;
                        }
                    }
                }
            }
        }
        int32_t *t = nz; nz = nz_new; nz_new = t;
    }
    *n_big = nbig;
    rc_store(&d, state);
    return 0;
}

/* ------------------------------------------------------- exact inverse DCT (§9.7) */

/* Every product and partial sum below is an integer under 2^53 (FORMAT.md §9.7, §10.4
 * "Exactness"), so binary64 arithmetic is exact in any order, with or without FMA, and
 * lets the compiler vectorise; rounding is floor(z * 2^-s + 1/2), exact too. */

static const double T[8][8] = {
    {5793, 5793, 5793, 5793, 5793, 5793, 5793, 5793},
    {8035, 6811, 4551, 1598, -1598, -4551, -6811, -8035},
    {7568, 3135, -3135, -7568, -7568, -3135, 3135, 7568},
    {6811, -1598, -8035, -4551, 4551, 8035, 1598, -6811},
    {5793, -5793, -5793, 5793, 5793, -5793, -5793, 5793},
    {4551, -8035, 1598, 6811, -6811, -1598, 8035, -4551},
    {3135, -7568, 7568, -3135, -3135, 7568, -7568, 3135},
    {1598, -4551, 6811, -8035, 8035, -6811, 4551, -1598},
};

static inline double clamp_sample(double v) {
    return v > (double)MAX_SAMPLE ? (double)MAX_SAMPLE : (v < -(double)MAX_SAMPLE ? -(double)MAX_SAMPLE : v);
}

/* y[u][v][w] (flat 64u + 8v + w) -> out[x][y][z] += clamp(R) */
static void idct_block_add(const double *y, double *out) {
    double r1[512], r2[512], r3[512];
    const double s1 = 1.0 / 2048.0, s2 = 1.0 / 16384.0, s3 = 1.0 / 131072.0;
    for (int uv = 0; uv < 64; uv++) { /* along w */
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int k = 0; k < 8; k++) {
            double c = y[8 * uv + k];
            for (int z = 0; z < 8; z++) acc[z] += c * T[k][z];
        }
        for (int z = 0; z < 8; z++) r1[8 * uv + z] = floor(acc[z] * s1 + 0.5);
    }
    for (int u = 0; u < 8; u++) /* along v */
        for (int yy = 0; yy < 8; yy++) {
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int k = 0; k < 8; k++) {
                double t = T[k][yy];
                const double *row = r1 + 64 * u + 8 * k;
                for (int z = 0; z < 8; z++) acc[z] += t * row[z];
            }
            for (int z = 0; z < 8; z++) r2[64 * u + 8 * yy + z] = floor(acc[z] * s2 + 0.5);
        }
    for (int x = 0; x < 8; x++) { /* along u */
        double *acc = r3 + 64 * x;
        for (int f = 0; f < 64; f++) acc[f] = 0.0;
        for (int k = 0; k < 8; k++) {
            double t = T[k][x];
            const double *row = r2 + 64 * k;
            for (int f = 0; f < 64; f++) acc[f] += t * row[f];
        }
        for (int f = 0; f < 64; f++) out[64 * x + f] += clamp_sample(floor(acc[f] * s3 + 0.5));
    }
}

/* ------------------------------------------------------ motion compensation (§10.4) */

static const double TAPS[8][4] = {
    {0, 64, 0, 0}, {-2, 58, 10, -2}, {-4, 54, 16, -2}, {-6, 46, 28, -4},
    {-4, 36, 36, -4}, {-4, 28, 46, -6}, {-2, 16, 54, -4}, {-2, 10, 58, -2},
};

static inline int64_t clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* pred[x][y][z] (lattice integers as doubles) of the block at voxel (ox, oy, oz) with vector
 * mv from the previous plane (float32 values times 2^-e, layout (., py, pz)), grid (gx, gy, gz). */
static void predict_block(const float *prev, int64_t py, int64_t pz, int64_t gx, int64_t gy, int64_t gz,
                          double scale, int64_t ox, int64_t oy, int64_t oz, const int64_t *mv, double *pred) {
    int64_t ix = mv[0] >> 3, iy = mv[1] >> 3, iz = mv[2] >> 3; /* gcc: arithmetic shift = floor */
    const double *fx = TAPS[mv[0] & 7], *fy = TAPS[mv[1] & 7], *fz = TAPS[mv[2] & 7];
    int64_t cx[SPAN], cy[SPAN], cz[SPAN];
    for (int t = 0; t < SPAN; t++) {
        cx[t] = clampi(ox + ix + t - 1, 0, gx - 1);
        cy[t] = clampi(oy + iy + t - 1, 0, gy - 1);
        cz[t] = clampi(oz + iz + t - 1, 0, gz - 1);
    }
    double region[SPAN][SPAN][SPAN];
    double a1[BLK][SPAN][SPAN];
    double a2[BLK][BLK][SPAN];
    int contiguous_z = cz[SPAN - 1] - cz[0] == SPAN - 1;
    for (int a = 0; a < SPAN; a++)
        for (int b = 0; b < SPAN; b++) {
            const float *line = prev + (cx[a] * py + cy[b]) * pz;
            double *r = region[a][b];
            if (contiguous_z) {
                line += cz[0];
                for (int c = 0; c < SPAN; c++) r[c] = (double)line[c] * scale;
            } else {
                for (int c = 0; c < SPAN; c++) r[c] = (double)line[cz[c]] * scale;
            }
        }
    for (int x = 0; x < BLK; x++) {
        const double *r0 = &region[x][0][0], *r1 = &region[x + 1][0][0], *r2 = &region[x + 2][0][0],
                     *r3 = &region[x + 3][0][0];
        double *o = &a1[x][0][0];
        for (int f = 0; f < SPAN * SPAN; f++) o[f] = fx[0] * r0[f] + fx[1] * r1[f] + fx[2] * r2[f] + fx[3] * r3[f];
    }
    for (int x = 0; x < BLK; x++)
        for (int y = 0; y < BLK; y++) {
            const double *r0 = a1[x][y], *r1 = a1[x][y + 1], *r2 = a1[x][y + 2], *r3 = a1[x][y + 3];
            double *o = a2[x][y];
            for (int c = 0; c < SPAN; c++) o[c] = fy[0] * r0[c] + fy[1] * r1[c] + fy[2] * r2[c] + fy[3] * r3[c];
        }
    const double half = 131072.0, inv = 1.0 / 262144.0;
    for (int x = 0; x < BLK; x++)
        for (int y = 0; y < BLK; y++) {
            const double *r = a2[x][y];
            double *o = pred + 64 * x + 8 * y;
            for (int z = 0; z < BLK; z++)
                o[z] = floor((fz[0] * r[z] + fz[1] * r[z + 1] + fz[2] * r[z + 2] + fz[3] * r[z + 3] + half) * inv);
        }
}

/* ------------------------------------------------------- block reconstruction (§9.8, §10.5) */

/* Reconstruct the n occupied blocks of one channel into `out` (float32, padded layout
 * (., out_py, out_pz)); `prev` (layout (., py, pz), at least the grid) is the previous frame.
 * blocks: (n, 3) block coordinates; predicted[b]: 1 = add the motion-compensated prediction
 * from `prev` with mv[b] (residual frames), 0 = prediction 0 (intra frames, intra blocks);
 * levels: (n, 512) int32 (NULL: all zero); steps: (512,) quantiser steps.
 * Returns 0, or -1 when a dequantised coefficient exceeds 2^29 (the caller discards the frame). */
int64_t rerf_reconstruct_channel(float *out, int64_t out_py, int64_t out_pz, const float *prev, int64_t py,
                                 int64_t pz, int64_t gx, int64_t gy, int64_t gz, double scale, double inv,
                                 int64_t n, const int64_t *blocks, const uint8_t *predicted, const int64_t *mv,
                                 const int32_t *levels, const int64_t *steps) {
    double val[512], coeff[512];
    for (int64_t b = 0; b < n; b++) {
        int64_t ox = blocks[3 * b] * BLK, oy = blocks[3 * b + 1] * BLK, oz = blocks[3 * b + 2] * BLK;
        if (predicted && predicted[b])
            predict_block(prev, py, pz, gx, gy, gz, scale, ox, oy, oz, mv + 3 * b, val);
        else
            memset(val, 0, sizeof(val));
        int any = 0;
        if (levels) {
            const int32_t *lv = levels + 512 * b;
            for (int f = 0; f < 512; f++) any |= lv[f];
            if (any) {
                for (int f = 0; f < 512; f++) {
                    int64_t y = (int64_t)lv[f] * steps[f];
                    if (y > MAX_COEFF || y < -MAX_COEFF) return -1;
                    coeff[f] = (double)y;
                }
                idct_block_add(coeff, val);
            }
        }
        for (int x = 0; x < BLK; x++)
            for (int y = 0; y < BLK; y++) {
                float *dst = out + ((ox + x) * out_py + (oy + y)) * out_pz + oz;
                const double *src = val + 64 * x + 8 * y;
                for (int z = 0; z < BLK; z++) dst[z] = (float)(clamp_sample(src[z]) * inv);
            }
    }
    return 0;
}

/* ------------------------------------------------------------------ Python module stub */

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "rerf's compiled decode loops, called through ctypes (see native.py).", -1,
                                    NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
