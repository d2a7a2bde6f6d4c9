/* Compiled CPU field kernels. The inference renderer: ray marching, free-space skip, trilinear lookups and
 * compositing of rerf_codec/field/render.py, one ray at a time (native_render.py calls it); the
 * deferred kernel shares a chunk's rays over threads (torch's thread count), the same bits for any.
 *
 * Why: on CPU the torch renderer spends its time building ragged sample lists (marching,
 * advanced indexing, grid_sample, cumulative sums), not in the colour MLP, so deferred
 * shading (one MLP call per ray) was only 1.3-1.8x faster than per-sample shading. Here a
 * ray is marched in registers: no sample list is ever materialised, samples behind an
 * opaque surface are never looked up, and only what the MLP needs leaves the kernel.
 *
 * It follows render.py's float32 arithmetic operation by operation (compiled with
 * -ffp-contract=off, so no fused multiply-add changes a rounding): the slab test and sample
 * lattice of `march_rays` (with the occupied window), the nearest-voxel occupancy test of
 * `occupied` (round half to even, clamped), `grid_sample(align_corners=True,
 * padding_mode="border")`'s trilinear weights and summation order, softplus with torch's
 * threshold 20, and the transmittance in binary64. The transcendental functions (expf,
 * log1pf) are the C library's, so results agree with torch to float32 rounding, not bit for
 * bit (tests/test_native_render.py: images within 1e-4).
 *
 * One deliberate difference: early ray termination. Once the transmittance before a sample
 * falls below TERMINATE (1e-6) no later sample can have a weight above it, and rerf's weight
 * threshold (1e-4) is far above it, so no later sample would be shaded; the kernel stops
 * looking up density there. The samples behind are still counted (occupancy test only) so
 * the `samples` statistic equals the torch renderer's; T_final is then the transmittance at
 * termination (< 1e-6) instead of the even smaller true value.
 *
 * Also the trainer's kernels (native_train.py): the sample list of render_rays
 * (rerf_march_samples), the sparse-grid trilinear lookups and their backward (rerf_sparse_gather,
 * rerf_sparse_scatter; sparse_grid.py), the residual fit's optimiser step (rerf_prox_adam_step) and the
 * motion fit's block warp and its backward (rerf_block_warp, rerf_block_warp_backward), and the keyframe's
 * total variation (rerf_tv_sums, rerf_tv_grad).
 *
 * The module also defines an empty Python extension module so that setuptools builds it
 * as part of `pip install` and `import rerf_codec.field._march` finds the file.
 */
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define HAVE_PTHREADS 1
#endif

#define TERMINATE 1e-6
#define MAX_CHANNELS 256

/* The grid and the render constants, shared by both kernels (float32 as render.py uses them). */
typedef struct {
    const float *density;   /* (X, Y, Z) */
    const float *features;  /* (X, Y, Z, C): channel-last, so one voxel's features are contiguous */
    const uint8_t *occ;     /* (X, Y, Z) 0/1 */
    int64_t n[3];           /* X, Y, Z */
    int64_t channels;
    float lo[3], hi[3], sp[3]; /* box, voxel spacing */
    float inv_sp[3], scale[3];  /* 1 / spacing, (n - 1) / (hi - lo) */
    float win_lo[3], win_hi[3];
    int has_window;
    float step, shift, depth_per_step, weight_threshold;
    float walk_lo[4], walk_inv_sp[4], walk_n[4], walk_n_max[4]; /* the walk's x, y, z, 0 (occupied_at) */
} grid_t;

/* geometry.ray_aabb with near = 0: entry and exit distance of an axis-aligned box. */
static void slab(const float *o, const float *d, const float *lo, const float *hi, float *t_near, float *t_far) {
    float tn = 0, tf = 0;
    for (int a = 0; a < 3; a++) {
        float s = fabsf(d[a]) < 1e-9f ? 1e-9f : d[a];
        float t0 = (lo[a] - o[a]) / s, t1 = (hi[a] - o[a]) / s;
        float mn = t0 < t1 ? t0 : t1, mx = t0 > t1 ? t0 : t1;
        if (a == 0 || mn > tn) tn = mn;
        if (a == 0 || mx < tf) tf = mx;
    }
    *t_near = tn > 0.0f ? tn : 0.0f;
    *t_far = tf;
}

/* Corner offsets and trilinear weights of a sample, grid_sample's eight terms in its order. */
typedef struct {
    int64_t off[8];
    float w[8];
} trilinear_t;

static inline float clip(float c, int64_t size) {
    float limit = (float)(size - 1); /* border padding: clip into [0, size - 1] */
    return c < 0 ? 0 : (c > limit ? limit : c);
}

static inline void trilinear(const grid_t *g, const float *p, trilinear_t *t) {
    /* grid_sample's source index ((unit + 1) / 2)·(n - 1), unit = (p - lo) / (hi - lo)·2 - 1 (to_unit),
     * is (p - lo)·(n - 1)/(hi - lo): one multiply instead of two divisions. It can differ from
     * torch's in the last bit, which moves a trilinear weight by ~1e-7 (no decision hangs on it);
     * grid_sample's (x, y, z) are our (Z, Y, X). */
    float cx = clip((p[0] - g->lo[0]) * g->scale[0], g->n[0]);
    float cy = clip((p[1] - g->lo[1]) * g->scale[1], g->n[1]);
    float cz = clip((p[2] - g->lo[2]) * g->scale[2], g->n[2]);
    int64_t x0 = (int64_t)cx, y0 = (int64_t)cy, z0 = (int64_t)cz; /* floor: c >= 0 after clipping */
    int64_t ny = g->n[1], nz = g->n[2];
    /* a +1 neighbour past the edge has weight exactly 0 (grid_sample skips it): its stride is 0 */
    int64_t sx = x0 + 1 < g->n[0] ? ny * nz : 0, sy = y0 + 1 < ny ? nz : 0, sz = z0 + 1 < nz ? 1 : 0;
    float ax = (float)(x0 + 1) - cx, bx = cx - (float)x0;
    float ay = (float)(y0 + 1) - cy, by = cy - (float)y0;
    float az = (float)(z0 + 1) - cz, bz = cz - (float)z0;
    int64_t b = (x0 * ny + y0) * nz + z0;
    t->off[0] = b;                t->w[0] = az * ay * ax; /* tnw */
    t->off[1] = b + sz;           t->w[1] = bz * ay * ax; /* tne */
    t->off[2] = b + sy;           t->w[2] = az * by * ax; /* tsw */
    t->off[3] = b + sy + sz;      t->w[3] = bz * by * ax; /* tse */
    t->off[4] = b + sx;           t->w[4] = az * ay * bx; /* bnw */
    t->off[5] = b + sx + sz;      t->w[5] = bz * ay * bx; /* bne */
    t->off[6] = b + sx + sy;      t->w[6] = az * by * bx; /* bsw */
    t->off[7] = b + sx + sy + sz; t->w[7] = bz * by * bx; /* bse */
}

/* torch.round (half to even, the default rounding mode) without a libm call: adding and
 * subtracting 1.5·2^23 rounds a float below 2^22 in magnitude to an integer, exactly as rint
 * (C99 without -ffast-math may not fold the pair away). */
static inline float round_even(float v) {
    if (!(fabsf(v) < 4194304.0f)) return nearbyintf(v);
    float shifted = v + 12582912.0f;
    return shifted - 12582912.0f;
}

/* occupied()'s round((p - lo) / spacing), bit for bit: a multiply by the reciprocal can differ
 * from the division in the last bit, which matters only next to a rounding tie, so only there
 * is the division done. */
static inline int64_t nearest_voxel(float rel, float inv_sp, float sp) {
    float v = rel * inv_sp, r = round_even(v);
    if (fabsf(fabsf(v - r) - 0.5f) < 1e-3f) r = round_even(rel / sp);
    return (int64_t)r;
}

static inline int occupied(const grid_t *g, const float *p) {
    int64_t idx[3];
    for (int a = 0; a < 3; a++) {
        int64_t i = nearest_voxel(p[a] - g->lo[a], g->inv_sp[a], g->sp[a]);
        idx[a] = i < 0 ? 0 : (i > g->n[a] - 1 ? g->n[a] - 1 : i);
    }
    return g->occ[(idx[0] * g->n[1] + idx[1]) * g->n[2] + idx[2]];
}

/* The walk's occupancy test at o + d·t: occupied() with the sample's position computed here. With
 * SSE2 the three axes go through one register: the same operations in the same order per axis, so
 * the same bits, and the test runs ~1.3x faster (crane 256²: deferred kernel 37 -> 33.5 ms). Two
 * changes of form, not of result: v is clamped into [-1, n] before rounding (in range it is
 * unchanged; outside, the clamp to [0, n - 1] after rounding gives what it gave), which keeps it
 * within the add-and-subtract rounding's range; and a sample next to a rounding tie on any axis
 * takes the scalar test, with its division. */
#if defined(__SSE2__)
#include <emmintrin.h>
typedef struct {
    __m128 o, d, lo, inv_sp, n, n_max; /* x, y, z, 0 */
} walk_t;

static inline void walk_init(const grid_t *g, const float *o, const float *d, walk_t *w) {
    w->o = _mm_set_ps(0, o[2], o[1], o[0]);
    w->d = _mm_set_ps(0, d[2], d[1], d[0]);
    w->lo = _mm_loadu_ps(g->walk_lo);
    w->inv_sp = _mm_loadu_ps(g->walk_inv_sp);
    w->n = _mm_loadu_ps(g->walk_n);
    w->n_max = _mm_loadu_ps(g->walk_n_max);
}

/* occupied(o + d·t); writes the position to p[0..3] (p[3] is padding). */
static inline int occupied_at(const grid_t *g, const walk_t *w, float t, float *p) {
    const __m128 magic = _mm_set1_ps(12582912.0f), abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 p4 = _mm_add_ps(w->o, _mm_mul_ps(w->d, _mm_set1_ps(t)));
    __m128 v = _mm_mul_ps(_mm_sub_ps(p4, w->lo), w->inv_sp);
    v = _mm_min_ps(_mm_max_ps(v, _mm_set1_ps(-1.0f)), w->n);
    __m128 r = _mm_sub_ps(_mm_add_ps(v, magic), magic); /* round_even */
    __m128 tie = _mm_and_ps(_mm_sub_ps(_mm_and_ps(_mm_sub_ps(v, r), abs_mask), _mm_set1_ps(0.5f)), abs_mask);
    _mm_storeu_ps(p, p4);
    if (_mm_movemask_ps(_mm_cmplt_ps(tie, _mm_set1_ps(1e-3f))) & 7) return occupied(g, p);
    r = _mm_min_ps(_mm_max_ps(r, _mm_setzero_ps()), w->n_max);
    int32_t i[4];
    _mm_storeu_si128((__m128i *)i, _mm_cvttps_epi32(r));
    return g->occ[((int64_t)i[0] * g->n[1] + i[1]) * g->n[2] + i[2]];
}
#else
typedef struct {
    const float *o, *d;
} walk_t;

static inline void walk_init(const grid_t *g, const float *o, const float *d, walk_t *w) {
    (void)g;
    w->o = o, w->d = d;
}

static inline int occupied_at(const grid_t *g, const walk_t *w, float t, float *p) {
    for (int a = 0; a < 3; a++) p[a] = w->o[a] + w->d[a] * t;
    return occupied(g, p);
}
#endif

/* Features at the sample, into out[C] (grid_sample's per-channel summation order). Inlined into
 * callers that pass a constant C, where the loops unroll and out stays in registers. */
static inline __attribute__((always_inline)) void lookup_features(const grid_t *g, const trilinear_t *t, int64_t C,
                                                                  float *out) {
    for (int64_t c = 0; c < C; c++) out[c] = 0;
    for (int k = 0; k < 8; k++) {
        const float *v = g->features + t->off[k] * C;
        float w = t->w[k];
        for (int64_t c = 0; c < C; c++) out[c] += v[c] * w;
    }
}

static inline double decay_of(double ex, float dps) {
    if (dps == 0.5f) return 1.0 / sqrt(1.0 + ex);
    if (dps == 1.0f) return 1.0 / (1.0 + ex);
    return exp(-(double)dps * log1p(ex));
}

/* march_rays' lattice for one ray: samples k0 .. k0 + n - 1 at t_near + (k + ½)·step (returns t_near). */
static float lattice(const grid_t *g, const float *o, const float *d, int64_t *k0_out, int64_t *n_out) {
    float t_near, t_far;
    slab(o, d, g->lo, g->hi, &t_near, &t_far);
    float nf = ceilf((t_far - t_near) / g->step);
    int64_t n = nf > 0 ? (int64_t)nf : 0, k0 = 0;
    if (g->has_window) { /* march_rays(window=...): the same lattice, only the window's part */
        float w_near, w_far;
        slab(o, d, g->win_lo, g->win_hi, &w_near, &w_far);
        float f0 = floorf((w_near - t_near) / g->step - 0.5f);
        int64_t k1 = (int64_t)ceilf((w_far - t_near) / g->step - 0.5f) + 1;
        k0 = f0 > 0 ? (int64_t)f0 : 0;
        if (k0 > n) k0 = n;
        if (k1 > n) k1 = n;
        n = k1 - k0 > 0 ? k1 - k0 : 0;
    }
    *k0_out = k0, *n_out = n;
    return t_near;
}

/* One ray of march_rays: its lattice, the occupancy test, density, alpha and transmittance; the
 * statement given last runs for each sample whose weight passes the threshold, with `weight` and `tri`
 * in scope. Leaves the occupied samples in `count` and the transmittance in `trans` (binary64, as
 * render.py's running sum).
 *
 * A macro, not a function taking a shading callback (as it was): through the callback each
 * kernel's running sums lived in memory, reloaded after every store (-fno-strict-aliasing), and
 * the channel count was unknown. Expanded inside each kernel's per-ray function, for C = 12 and
 * for any C, the sums stay in registers and the feature loops unroll: crane 256², deferred kernel
 * 47 -> 38 ms, per-sample 40 -> 34 ms, the same bits (BENCHMARKS, "Session 13"). */
#define MARCH_RAY(g, o, d, ...)                                                                        \
    int64_t k0, n, count = 0;                                                                          \
    float t_near = lattice(g, o, d, &k0, &n);                                                          \
    double trans = 1;                                                                                  \
    int alive = 1;                                                                                     \
    walk_t walk;                                                                                       \
    walk_init(g, o, d, &walk);                                                                         \
    for (int64_t k = k0; k < k0 + n; k++) {                                                            \
        float t = t_near + ((float)k + 0.5f) * (g)->step, p[4];                                        \
        if (!occupied_at(g, &walk, t, p)) continue;                                                    \
        count++;                                                                                       \
        if (!alive) continue;                                                                          \
        trilinear_t tri;                                                                               \
        trilinear(g, p, &tri);                                                                         \
        /* the feature rows a shaded sample reads, fetched while its density and alpha are worked    \
         * out (from the first of each pair of z-neighbours to the last of the second): crane 256²,  \
         * 2 % of the kernel */                                                                        \
        for (int c = 0; c < 8; c += 2) {                                                               \
            __builtin_prefetch((g)->features + tri.off[c] * (g)->channels);                            \
            __builtin_prefetch((g)->features + (tri.off[c + 1] + 1) * (g)->channels - 1);              \
        }                                                                                              \
        float dens = 0;                                                                                \
        for (int c = 0; c < 8; c++) dens += (g)->density[tri.off[c]] * tri.w[c];                       \
        float x = dens + (g)->shift;                                                                   \
        /* exp(-τ) = exp(-softplus(x)·dps) = (1 + e^x)^-dps: one exp (and a sqrt for rerf's step    \
         * ratio ½) instead of exp, log1p and exp; in binary64, so at least as close to the exact   \
         * value as render.py's float32 softplus and exp. T = Π exp(-τ) equals its exp(-Σ τ) to     \
         * binary64 rounding. */                                                                       \
        double decay = decay_of(exp((double)x), (g)->depth_per_step);                                  \
        float weight = (float)trans * (1.0f - (float)decay);                                           \
        trans *= decay;                                                                                \
        if (weight > (g)->weight_threshold) __VA_ARGS__                                                \
        if (trans < TERMINATE) alive = 0;                                                              \
    }

#define RAY_FN static inline __attribute__((always_inline)) float

/* --- deferred: W, D = Σ w·sigmoid(f[0:3]), F = Σ w·f per ray ------------------------------- */

#define DEFERRED_RAY(NAME, CH)                                                                           \
    RAY_FN NAME(const grid_t *g, const float *o, const float *d, int64_t *samples, float *w_out,          \
                float *d_out, float *f_out) {                                                            \
        const int64_t C = (CH);                                                                          \
        float w_sum = 0, d_sum[3] = {0, 0, 0}, f_sum[MAX_CHANNELS], feat[MAX_CHANNELS];                  \
        for (int64_t c = 0; c < C; c++) f_sum[c] = 0;                                                    \
        MARCH_RAY(g, o, d, {                                                                             \
            lookup_features(g, &tri, C, feat);                                                           \
            w_sum += weight;                                                                             \
            for (int c = 0; c < 3; c++) d_sum[c] += weight * (1.0f / (1.0f + expf(-feat[c])));           \
            for (int64_t c = 0; c < C; c++) f_sum[c] += weight * feat[c];                                \
        })                                                                                               \
        *samples += count;                                                                               \
        *w_out = w_sum;                                                                                  \
        for (int c = 0; c < 3; c++) d_out[c] = d_sum[c];                                                 \
        for (int64_t c = 0; c < C; c++) f_out[c] = f_sum[c];                                             \
        return (float)trans;                                                                             \
    }
DEFERRED_RAY(deferred_ray_12, 12)
DEFERRED_RAY(deferred_ray_any, g->channels)

static int setup(grid_t *g, const float *density, const float *features, const uint8_t *occ, int64_t nx, int64_t ny,
                 int64_t nz, int64_t channels, const float *box, int32_t has_window, float step, float shift,
                 float depth_per_step, float weight_threshold) {
    if (channels < 1 || channels > MAX_CHANNELS || nx < 2 || ny < 2 || nz < 2) return -1;
    g->density = density;
    g->features = features;
    g->occ = occ;
    g->n[0] = nx, g->n[1] = ny, g->n[2] = nz;
    g->channels = channels;
    for (int a = 0; a < 3; a++) {
        g->lo[a] = box[a], g->hi[a] = box[3 + a], g->sp[a] = box[6 + a];
        g->win_lo[a] = box[9 + a], g->win_hi[a] = box[12 + a];
        g->inv_sp[a] = 1.0f / g->sp[a];
        g->scale[a] = (float)(g->n[a] - 1) / (g->hi[a] - g->lo[a]);
        g->walk_lo[a] = g->lo[a], g->walk_inv_sp[a] = g->inv_sp[a];
        g->walk_n[a] = (float)g->n[a], g->walk_n_max[a] = (float)(g->n[a] - 1);
    }
    g->walk_lo[3] = g->walk_inv_sp[3] = g->walk_n[3] = g->walk_n_max[3] = 0;
    g->has_window = has_window;
    g->step = step, g->shift = shift, g->depth_per_step = depth_per_step, g->weight_threshold = weight_threshold;
    return 0;
}

/* A share of the deferred kernel's rays: blocks of RAY_BLOCK rays, every n-th block from `first`
 * (interleaved, so that threads share the object's rows and the empty ones alike). */
#define RAY_BLOCK 256
#define MAX_THREADS 64
typedef struct {
    const grid_t *g;
    const float *origins, *dirs;
    int64_t n_rays, first, stride;
    float *out_w, *out_d, *out_f, *out_t;
    int64_t samples;
} deferred_share;

static void *deferred_rays(void *arg) {
    deferred_share *s = (deferred_share *)arg;
    const grid_t *g = s->g;
    int64_t C = g->channels, samples = 0;
    for (int64_t b = s->first * RAY_BLOCK; b < s->n_rays; b += s->stride * RAY_BLOCK) {
        int64_t end = b + RAY_BLOCK < s->n_rays ? b + RAY_BLOCK : s->n_rays;
        for (int64_t r = b; r < end; r++) {
            const float *o = s->origins + 3 * r, *d = s->dirs + 3 * r;
            float *w = s->out_w + r, *dd = s->out_d + 3 * r, *f = s->out_f + r * C;
            s->out_t[r] = C == 12 ? deferred_ray_12(g, o, d, &samples, w, dd, f)
                                  : deferred_ray_any(g, o, d, &samples, w, dd, f);
        }
    }
    s->samples = samples;
    return NULL;
}

/* Rays [0, n_rays): out_w (R), out_d (R, 3), out_f (R, C), out_t (R), on up to n_threads threads
 * (each ray is marched alone, so any count gives the same bits; without pthreads, or if a thread
 * cannot start, its share runs on the caller's). Returns the samples that passed the occupancy
 * test, or -1 for invalid sizes. */
int64_t rerf_march_deferred(const float *origins, const float *dirs, int64_t n_rays, const float *density,
                            const float *features, const uint8_t *occ, int64_t nx, int64_t ny, int64_t nz,
                            int64_t channels, const float *box, int32_t has_window, float step, float shift,
                            float depth_per_step, float weight_threshold, float *out_w, float *out_d, float *out_f,
                            float *out_t, int64_t n_threads) {
    grid_t g;
    if (setup(&g, density, features, occ, nx, ny, nz, channels, box, has_window, step, shift, depth_per_step,
              weight_threshold) || n_rays < 0)
        return -1;
    int64_t blocks = (n_rays + RAY_BLOCK - 1) / RAY_BLOCK;
    int64_t t = n_threads < 1 ? 1 : (n_threads > MAX_THREADS ? MAX_THREADS : n_threads);
    if (t > blocks) t = blocks > 0 ? blocks : 1;
    deferred_share shares[MAX_THREADS];
    for (int64_t i = 0; i < t; i++)
        shares[i] = (deferred_share){&g, origins, dirs, n_rays, i, t, out_w, out_d, out_f, out_t, 0};
#ifdef HAVE_PTHREADS
    pthread_t threads[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int64_t i = 1; i < t; i++) started[i] = pthread_create(&threads[i], NULL, deferred_rays, &shares[i]) == 0;
    deferred_rays(&shares[0]);
    for (int64_t i = 1; i < t; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        else
            deferred_rays(&shares[i]);
    }
#else
    for (int64_t i = 0; i < t; i++) deferred_rays(&shares[i]);
#endif
    int64_t samples = 0;
    for (int64_t i = 0; i < t; i++) samples += shares[i].samples;
    return samples;
}

/* --- per sample: the shaded samples themselves ------------------------------------------ */

/* The shaded samples of one ray appended at *written (up to `capacity`; *written counts them all). */
#define PER_SAMPLE_RAY(NAME, CH)                                                                         \
    RAY_FN NAME(const grid_t *g, const float *o, const float *d, int64_t *samples, int64_t ray,           \
                int64_t capacity, int64_t *written, int64_t *ray_out, float *w_out, float *f_out) {      \
        const int64_t C = (CH);                                                                          \
        MARCH_RAY(g, o, d, {                                                                             \
            if (*written < capacity) { /* summed in registers, then stored */                            \
                float feat[MAX_CHANNELS];                                                                \
                lookup_features(g, &tri, C, feat);                                                       \
                ray_out[*written] = ray;                                                                 \
                w_out[*written] = weight;                                                                \
                for (int64_t c = 0; c < C; c++) f_out[*written * C + c] = feat[c];                       \
            }                                                                                            \
            (*written)++;                                                                                \
        })                                                                                               \
        *samples += count;                                                                               \
        return (float)trans;                                                                             \
    }
PER_SAMPLE_RAY(per_sample_ray_12, 12)
PER_SAMPLE_RAY(per_sample_ray_any, g->channels)

/* Rays [0, n_rays) in order, as many as fit: out_t (R); their shaded samples (sorted by ray, then
 * distance) into sample_ray, sample_w, sample_f (at most `capacity`); *out_samples = their occupied
 * samples; *out_rays = how many rays were marched. A ray whose samples do not fit is left for the
 * next call (with room for more), so no ray is marched twice but that one. Returns the number of
 * shaded samples written, or -1 for invalid sizes. */
int64_t rerf_march_per_sample(const float *origins, const float *dirs, int64_t n_rays, const float *density,
                              const float *features, const uint8_t *occ, int64_t nx, int64_t ny, int64_t nz,
                              int64_t channels, const float *box, int32_t has_window, float step, float shift,
                              float depth_per_step, float weight_threshold, float *out_t, int64_t capacity,
                              int64_t *sample_ray, float *sample_w, float *sample_f, int64_t *out_samples,
                              int64_t *out_rays) {
    grid_t g;
    if (setup(&g, density, features, occ, nx, ny, nz, channels, box, has_window, step, shift, depth_per_step,
              weight_threshold))
        return -1;
    int64_t samples = 0, written = 0, r;
    for (r = 0; r < n_rays; r++) {
        const float *o = origins + 3 * r, *d = dirs + 3 * r;
        int64_t samples_before = samples, written_before = written;
        float t = channels == 12
                      ? per_sample_ray_12(&g, o, d, &samples, r, capacity, &written, sample_ray, sample_w, sample_f)
                      : per_sample_ray_any(&g, o, d, &samples, r, capacity, &written, sample_ray, sample_w, sample_f);
        if (written > capacity) { /* this ray did not fit: the caller grows the buffers and resumes here */
            samples = samples_before, written = written_before;
            break;
        }
        out_t[r] = t;
    }
    *out_samples = samples;
    *out_rays = r;
    return written;
}

/* --- the trainer's sample list: march_rays + occupied, without the renderer ---------------- */

/* Rays [0, n_rays): the samples march_rays keeps (same lattice, window, occupancy test), sorted by
 * ray then distance: the first `capacity` into sample_ray (K) and sample_p (K, 3). Returns how
 * many there are (more than `capacity`: call again with room for them), or -1 for invalid sizes.
 * Why: building this list in torch (repeat_interleave, cumsum, per-sample rounding and a gather)
 * was a fifth of a residual iteration at 128³. */
int64_t rerf_march_samples(const float *origins, const float *dirs, int64_t n_rays, const uint8_t *occ, int64_t nx,
                           int64_t ny, int64_t nz, const float *box, int32_t has_window, float step, int64_t capacity,
                           int64_t *sample_ray, float *sample_p) {
    grid_t g;
    if (setup(&g, NULL, NULL, occ, nx, ny, nz, 1, box, has_window, step, 0, 0, 0)) return -1;
    int64_t count = 0;
    for (int64_t r = 0; r < n_rays; r++) {
        const float *o = origins + 3 * r, *d = dirs + 3 * r;
        int64_t k0, n;
        float t_near = lattice(&g, o, d, &k0, &n);
        walk_t walk;
        walk_init(&g, o, d, &walk);
        for (int64_t k = k0; k < k0 + n; k++) {
            float t = t_near + ((float)k + 0.5f) * g.step, p[4];
            if (!occupied_at(&g, &walk, t, p)) continue;
            if (count < capacity) {
                sample_ray[count] = r;
                for (int a = 0; a < 3; a++) sample_p[3 * count + a] = p[a];
            }
            count++;
        }
    }
    return count;
}

/* --- training lookups of a sparse grid (sparse_grid.py) ------------------------------------ */

/* Trilinear values of a table-backed grid at k continuous voxel indices (k, 3): out (k, C), plus
 * each sample's eight table rows and weights for the backward pass. The weights are
 * sparse_grid.py's torch formula (clamp into [0, n - 1], lower corner clamped to n - 2, w = x - i0,
 * corners in (dx, dy, dz) order, weight (wx·wy)·wz). Returns 0, or -1 when a corner has no table
 * row (rows_of[v] < 0), or -2 for invalid sizes. Why C: the same gathers in torch (index_select,
 * broadcast weights, index_add in the backward) took ~60 ms per residual iteration at 128³.
 *
 * Two passes, both prefetching GATHER_AHEAD samples ahead: first every sample's rows and weights,
 * then the values, in chunks of GATHER_CHUNK samples (so the rows are still in cache). Why: a renderer's samples come in ray order, which jumps through the grid, so
 * each sample's reads of rows_of (the whole grid's row index, 5.5 MB at 128³) and of the table
 * miss the cache; computed one sample at a time each miss waited in turn (crane 128³: ~50 ns per
 * density sample, ~150 per 12-channel one). Prefetching overlaps them. A sample in the same cell
 * as the one before (two per voxel along a ray) reuses its rows. The arithmetic and its order are
 * unchanged, so the values are bit-identical to the one-pass form. */
#define GATHER_AHEAD 8
#define GATHER_CHUNK 256
/* Runs LOOP(CH) with the channel count a compile-time constant for the trainer's counts (1, 12). */
#define BY_CHANNELS(LOOP)      \
    if (channels == 1) {       \
        LOOP(1)                \
    } else if (channels == 12) { \
        LOOP(12)               \
    } else {                   \
        LOOP(channels)         \
    }

static inline int64_t gather_cell(const float *x3, const int64_t n[3], const int64_t stride[3], float w[3][2]) {
    int64_t base = 0;
    for (int a = 0; a < 3; a++) {
        float hi = (float)(n[a] - 1), x = x3[a];
        x = x < 0 ? 0 : x;
        x = x > hi ? hi : x;
        float i0 = floorf(x);
        i0 = i0 > hi - 1 ? hi - 1 : i0;
        float t = x - i0;
        w[a][0] = 1 - t, w[a][1] = t;
        base += (int64_t)i0 * stride[a];
    }
    return base;
}

/* out[s] = Σ_j weights[8s + j] · value(rows[8s + j]), corners in order; a row below m is the trainable
 * table's (rows row_stride floats apart), the others the frozen ring's (contiguous). The channel
 * count is a compile-time constant where it is one of the trainer's (the loops unroll). */
#define ROW_VALUES(row, CH) ((row) < m ? table + (row) * row_stride : frozen + ((row) - m) * (CH))
#define GATHER_VALUES(CH)                                                                            \
    for (int64_t s = s0; s < s1; s++) {                                                              \
        if (s + GATHER_AHEAD < s1) {                                                                 \
            const int64_t *ra = rows + 8 * (s + GATHER_AHEAD);                                       \
            for (int j = 0; j < 8; j++) __builtin_prefetch(ROW_VALUES(ra[j], CH));                   \
        }                                                                                            \
        const int64_t *r = rows + 8 * s;                                                             \
        const float *ws = weights + 8 * s;                                                           \
        float *o = out + s * (CH);                                                                   \
        for (int64_t c = 0; c < (CH); c++) o[c] = 0;                                                 \
        for (int j = 0; j < 8; j++) {                                                                \
            const float *v = ROW_VALUES(r[j], CH);                                                   \
            float wt = ws[j];                                                                        \
            for (int64_t c = 0; c < (CH); c++) o[c] += v[c] * wt;                                    \
        }                                                                                            \
    }

int64_t rerf_sparse_gather(const float *index, int64_t k, const int64_t *rows_of, int64_t nx, int64_t ny, int64_t nz,
                           const float *table, int64_t m, int64_t row_stride, const float *frozen, int64_t channels,
                           float *out, int64_t *rows, float *weights) {
    if (k < 0 || nx < 2 || ny < 2 || nz < 2 || channels < 1 || m < 0 || row_stride < channels) return -2;
    const int64_t n[3] = {nx, ny, nz};
    const int64_t stride[3] = {ny * nz, nz, 1};
    int64_t last_base = -1;
    for (int64_t s0 = 0; s0 < k; s0 += GATHER_CHUNK) {
        int64_t s1 = s0 + GATHER_CHUNK < k ? s0 + GATHER_CHUNK : k;
        for (int64_t s = s0; s < s1; s++) {
            if (s + GATHER_AHEAD < k) {
                float wa[3][2];
                const int64_t *ra = rows_of + gather_cell(index + 3 * (s + GATHER_AHEAD), n, stride, wa);
                __builtin_prefetch(ra), __builtin_prefetch(ra + stride[1]);
                __builtin_prefetch(ra + stride[0]), __builtin_prefetch(ra + stride[0] + stride[1]);
            }
            float w[3][2];
            int64_t base = gather_cell(index + 3 * s, n, stride, w);
            int64_t *r = rows + 8 * s;
            float *ws = weights + 8 * s;
            int j = 0;
            for (int dx = 0; dx < 2; dx++)
                for (int dy = 0; dy < 2; dy++)
                    for (int dz = 0; dz < 2; dz++, j++) ws[j] = w[0][dx] * w[1][dy] * w[2][dz];
            if (base == last_base) {
                memcpy(r, r - 8, 8 * sizeof(int64_t));
                continue;
            }
            j = 0;
            for (int dx = 0; dx < 2; dx++)
                for (int dy = 0; dy < 2; dy++)
                    for (int dz = 0; dz < 2; dz++, j++) {
                        int64_t row = rows_of[base + dx * stride[0] + dy * stride[1] + dz];
                        if (row < 0) return -1;
                        r[j] = row;
                    }
            last_base = base;
        }
        BY_CHANNELS(GATHER_VALUES)
    }
    return 0;
}

/* rerf_sparse_gather's values alone, from rows and weights it returned before: out (k, C). Why: the
 * residual's coarse stage reads the same lattice points every iteration (each active voxel's
 * trilinear lookup of the half-resolution lattice), so their rows and weights are found once and
 * only the values are gathered again — the same loop, so the same bits. Returns 0, or -2 for
 * invalid sizes. */
int64_t rerf_sparse_values(const int64_t *rows, const float *weights, int64_t k, const float *table, int64_t m,
                           int64_t row_stride, const float *frozen, int64_t channels, float *out) {
    if (k < 0 || channels < 1 || m < 0 || row_stride < channels) return -2;
    for (int64_t s0 = 0; s0 < k; s0 += GATHER_CHUNK) {
        int64_t s1 = s0 + GATHER_CHUNK < k ? s0 + GATHER_CHUNK : k;
        BY_CHANNELS(GATHER_VALUES)
    }
    return 0;
}

/* The backward of rerf_sparse_gather for the trainable table: table_grad (m, C) += Σ_samples weight ·
 * grad (k, C) over the corners whose row is below m (the frozen ring gets no gradient), in sample
 * order (deterministic); prefetching and channel counts as in the gather. */
#define SCATTER_VALUES(CH)                                                                           \
    for (int64_t s = 0; s < k; s++) {                                                                \
        if (s + GATHER_AHEAD < k) {                                                                  \
            const int64_t *ra = rows + 8 * (s + GATHER_AHEAD);                                       \
            for (int j = 0; j < 8; j++)                                                              \
                if (ra[j] < m) __builtin_prefetch(table_grad + ra[j] * (CH), 1);                     \
        }                                                                                            \
        const float *g = grad + s * (CH);                                                            \
        for (int j = 0; j < 8; j++) {                                                                \
            int64_t row = rows[8 * s + j];                                                           \
            if (row >= m) continue;                                                                  \
            float *t = table_grad + row * (CH), wt = weights[8 * s + j];                             \
            for (int64_t c = 0; c < (CH); c++) t[c] += g[c] * wt;                                    \
        }                                                                                            \
    }

void rerf_sparse_scatter(const float *grad, int64_t k, const int64_t *rows, const float *weights, int64_t channels,
                         int64_t m, float *table_grad) {
    BY_CHANNELS(SCATTER_VALUES)
}

/* --- the residual fit's optimiser step (train/proximal.py) ---------------------------------- */

/* One step over n values of ProximalAdam, fused into one pass (its torch form is ~20 passes):
 * the orthant-wise L1 rule on the gradient (a value at zero moves only when |g| > lam), Adam as
 * torch.optim.Adam computes it (exp_avg.lerp_, exp_avg_sq.mul_.addcmul_, bias corrections in
 * binary64, param.addcdiv_), and the zero-crossing stop (a value that changed sign is set to 0
 * and its first moment cleared).
 *
 * Written without branches (selects instead) so that the compiler vectorises it — with
 * -fno-trapping-math and -fno-math-errno (setup.py), which let it evaluate both sides of a select
 * and use the sqrt instruction: the same IEEE operations on each value, so the same bits, ~7x
 * faster (4 M values: 29.6 -> 4.1 ms; BENCHMARKS, "Session 11"). */
static inline void prox_adam_run(float *restrict param, const float *restrict grad, float *restrict exp_avg,
                                 float *restrict exp_avg_sq, int64_t n, int l1, float lam_f, float w1, float b2,
                                 float w2, float bc2_sqrt, float eps_f, float step_size) {
    for (int64_t i = 0; i < n; i++) {
        float r = param[i], g = grad[i];
        if (l1) { /* a constant in each of the two calls below: no branch is left in the loop */
            float leave = fabsf(g) > lam_f ? g - lam_f * (g > 0 ? 1.0f : -1.0f) : 0.0f;
            float off = g + lam_f * (r > 0 ? 1.0f : -1.0f);
            g = r == 0 ? leave : off;
        }
        float m = exp_avg[i];
        m = m + w1 * (g - m);
        float v = exp_avg_sq[i] * b2 + w2 * (g * g);
        float denom = sqrtf(v) / bc2_sqrt + eps_f;
        float next = r + (-step_size) * (m / denom);
        int crossed = (r > 0 && !(next > 0)) || (r < 0 && !(next < 0)); /* crossed (or reached) zero: stop there */
        param[i] = crossed ? 0.0f : next, exp_avg[i] = crossed ? 0.0f : m, exp_avg_sq[i] = v;
    }
}

void rerf_prox_adam_step(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t n, double lam,
                         double beta1, double beta2, double lr, double eps, int64_t step) {
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), lam_f = (float)lam;
    float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2), eps_f = (float)eps;
    if (lam_f > 0)
        prox_adam_run(param, grad, exp_avg, exp_avg_sq, n, 1, lam_f, w1, b2, w2, bc2_sqrt, eps_f, step_size);
    else
        prox_adam_run(param, grad, exp_avg, exp_avg_sq, n, 0, lam_f, w1, b2, w2, bc2_sqrt, eps_f, step_size);
}

/* ------------------------------------------------------------------ Python module stub */

/* --- the motion fit's block warp (train/residual.py, warp_torch) ---------------------------- */

/* Where voxel p (whole numbers) moved by its 8³ block's vector of motion (3, nb blocks, row-major
 * by × bz) samples the grid: returns the lower corner's flat index and sets, per axis, the fraction
 * t, whether the coordinate was clamped (the format's warp and grid_sample(padding_mode="border")
 * clamp it: no gradient) and whether it lies on an interior lattice plane (a kink), and the block. */
static inline int64_t warp_cell(const float *p, const float *motion, const int64_t n[3], const int64_t stride[3],
                                int64_t by, int64_t bz, int64_t nb, float t[3], int clamped[3], int kink[3],
                                int64_t *block) {
    int64_t b = ((int64_t)(p[0] / 8) * by + (int64_t)(p[1] / 8)) * bz + (int64_t)(p[2] / 8), base = 0;
    for (int a = 0; a < 3; a++) {
        float hi = (float)(n[a] - 1), x = p[a] + motion[a * nb + b];
        clamped[a] = x < 0 || x > hi;
        x = x < 0 ? 0 : x;
        x = x > hi ? hi : x;
        float i0 = floorf(x);
        i0 = i0 > hi - 1 ? hi - 1 : i0;
        t[a] = x - i0;
        kink[a] = t[a] == 0 && i0 > 0;
        base += (int64_t)i0 * stride[a];
    }
    *block = b;
    return base;
}

/* The bilinear value, over the other two axes, of the grid plane i0[a] + k along axis a. */
static inline float warp_plane(const float *g, const int64_t stride[3], const float t[3], int a, int64_t k) {
    int b = (a + 1) % 3, c = (a + 2) % 3;
    const float *q = g + k * stride[a];
    float lo = q[0] * (1 - t[c]) + q[stride[c]] * t[c];
    float hi = q[stride[b]] * (1 - t[c]) + q[stride[b] + stride[c]] * t[c];
    return lo * (1 - t[b]) + hi * t[b];
}

/* out (k, C): the grid (C, nx, ny, nz) sampled trilinearly at each voxel p (coords, k × 3, whole
 * numbers) moved by its 8³ block's vector, p + motion[:, p / 8] (motion (3, bx, by, bz)), clamped
 * to the grid — trainer_form.warp_previous at a subset of voxels. Why C: grid_sample over every
 * active voxel and its backward cost ~65 ms per motion iteration at 128³ (crane), mostly
 * recomputing per-voxel weights that the block's single vector makes equal in a block.
 * Returns -2 for invalid sizes. */
int64_t rerf_block_warp(const float *grid, int64_t channels, int64_t nx, int64_t ny, int64_t nz, const float *motion,
                        int64_t bx, int64_t by, int64_t bz, const float *coords, int64_t k, float *out) {
    if (channels < 1 || nx < 2 || ny < 2 || nz < 2 || bx < 1 || by < 1 || bz < 1 || k < 0) return -2;
    const int64_t n[3] = {nx, ny, nz}, plane = nx * ny * nz;
    const int64_t stride[3] = {ny * nz, nz, 1}, nb = bx * by * bz;
    for (int64_t s = 0; s < k; s++) {
        float t[3];
        int clamped[3], kink[3];
        int64_t b, base = warp_cell(coords + 3 * s, motion, n, stride, by, bz, nb, t, clamped, kink, &b);
        float *o = out + s * channels;
        for (int64_t c = 0; c < channels; c++) { /* z, then y, then x: the torch warp's order */
            const float *g = grid + c * plane + base;
            o[c] = warp_plane(g, stride, t, 0, 0) * (1 - t[0]) + warp_plane(g, stride, t, 0, 1) * t[0];
        }
    }
    return 0;
}

/* The backward of rerf_block_warp in the motion: motion_grad (3, bx, by, bz) += Σ over the voxels of
 * a block of Σ_c grad[s, c] · ∂value_c / ∂p (zero along a clamped axis), summed in voxel order in
 * binary64 (deterministic). Where a coordinate lies exactly on a lattice plane (every voxel does at
 * whole-voxel motion: zero, or the hull search's start) trilinear interpolation has a kink and
 * the derivative is the symmetric one, the mean of the two cells' slopes; a one-sided slope there
 * biased every start of the motion fit (grid_sample's unnormalised coordinates land on either side
 * by rounding; measured on the demo: 0.26 dB less on frames 5 and 15 with the upper cell's slope). */
void rerf_block_warp_backward(const float *grid, int64_t channels, int64_t nx, int64_t ny, int64_t nz,
                              const float *motion, int64_t bx, int64_t by, int64_t bz, const float *coords, int64_t k,
                              const float *grad, double *motion_grad) {
    const int64_t n[3] = {nx, ny, nz}, plane = nx * ny * nz;
    const int64_t stride[3] = {ny * nz, nz, 1}, nb = bx * by * bz;
    for (int64_t s = 0; s < k; s++) {
        float t[3];
        int clamped[3], kink[3];
        int64_t b, base = warp_cell(coords + 3 * s, motion, n, stride, by, bz, nb, t, clamped, kink, &b);
        const float *gs = grad + s * channels;
        double d[3] = {0, 0, 0};
        for (int64_t c = 0; c < channels; c++) {
            const float *g = grid + c * plane + base;
            for (int a = 0; a < 3; a++) {
                if (clamped[a]) continue;
                float mid = warp_plane(g, stride, t, a, 0), up = warp_plane(g, stride, t, a, 1);
                float slope = kink[a] ? 0.5f * (up - warp_plane(g, stride, t, a, -1)) : up - mid;
                d[a] += (double)gs[c] * slope;
            }
        }
        for (int a = 0; a < 3; a++) motion_grad[a * nb + b] += d[a];
    }
}

/* --- the keyframe's total variation (keyframe.py total_variation) -------------------------- */

/* Squared neighbour differences of a (C, X, Y, Z) grid summed per axis, in binary64: sums[0..2] for
 * x, y, z (the loss is each sum over its count of pairs, added). Four partial sums per axis along a
 * row, so the loop vectorises (the value reaches only the backward, which does not use it). */
void rerf_tv_sums(const float *restrict g, int64_t channels, int64_t nx, int64_t ny, int64_t nz, double *sums) {
    double acc[3][4] = {{0}};
    const int64_t plane = nx * ny * nz, sx = ny * nz;
    for (int64_t c = 0; c < channels; c++)
        for (int64_t x = 0; x < nx; x++)
            for (int64_t y = 0; y < ny; y++) {
                const float *row = g + c * plane + x * sx + y * nz;
                const float *nx_row = x + 1 < nx ? row + sx : row, *ny_row = y + 1 < ny ? row + nz : row;
                for (int64_t z = 0; z < nz; z++) { /* a missing neighbour is the voxel itself: d = 0 */
                    float v = row[z], dx = nx_row[z] - v, dy = ny_row[z] - v;
                    float dz = z + 1 < nz ? row[z + 1] - v : 0.0f;
                    acc[0][z & 3] += (double)dx * dx, acc[1][z & 3] += (double)dy * dy, acc[2][z & 3] += (double)dz * dz;
                }
            }
    for (int a = 0; a < 3; a++) sums[a] = (acc[a][0] + acc[a][1]) + (acc[a][2] + acc[a][3]);
}

/* One voxel's gradient (see rerf_tv_grad), any neighbours missing. */
static inline float tv_voxel(const float *row, int64_t z, int64_t nz, int64_t sx, int has_xm, int has_xp, int has_ym,
                             int has_yp, float scale_x, float scale_y, float scale_z) {
    float v = row[z];
    float zp = z > 0 ? scale_z * (2.0f * (v - row[z - 1])) : 0.0f;
    float zm = z + 1 < nz ? -(scale_z * (2.0f * (row[z + 1] - v))) : 0.0f;
    float ym = has_ym ? -(scale_y * (2.0f * (row[z + nz] - v))) : 0.0f;
    float yp = has_yp ? scale_y * (2.0f * (v - row[z - nz])) : 0.0f;
    float xm = has_xm ? -(scale_x * (2.0f * (row[z + sx] - v))) : 0.0f;
    float xp = has_xp ? scale_x * (2.0f * (v - row[z - sx])) : 0.0f;
    return ((((zp + zm) + ym) + yp) + xm) + xp;
}

/* The gradient of Σ_a scale_a·Σ(neighbour difference along a)², bit for bit as autograd builds it
 * from the torch formula (mean(diff²) per axis; `scale_a` is the mean's incoming gradient over its
 * count, as torch divides it): each pair contributes ±scale·(2·d) to its two voxels, and the engine
 * adds the six full-size contributions in the order z, y-, y+, x-, x+ (last created, first run),
 * zeros where a voxel has no such neighbour. Why: those six tensors and the differences the forward
 * keeps were 0.75 kB per voxel of 12 channels — over half the keyframe's peak memory at 128³ — and
 * 270 ms of every full-resolution iteration (tests/test_train.py compares with autograd). Voxels with
 * all six neighbours take a loop without conditions, which vectorises (the same operations per lane). */
void rerf_tv_grad(const float *restrict g, int64_t channels, int64_t nx, int64_t ny, int64_t nz, float scale_x,
                  float scale_y, float scale_z, float *restrict grad) {
    const int64_t plane = nx * ny * nz, sx = ny * nz;
    for (int64_t c = 0; c < channels; c++)
        for (int64_t x = 0; x < nx; x++)
            for (int64_t y = 0; y < ny; y++) {
                const int64_t o = c * plane + x * sx + y * nz;
                const float *row = g + o;
                float *out = grad + o;
                int has_xm = x + 1 < nx, has_xp = x > 0, has_ym = y + 1 < ny, has_yp = y > 0;
                if (!(has_xm && has_xp && has_ym && has_yp) || nz < 3) {
                    for (int64_t z = 0; z < nz; z++)
                        out[z] = tv_voxel(row, z, nz, sx, has_xm, has_xp, has_ym, has_yp, scale_x, scale_y, scale_z);
                    continue;
                }
                out[0] = tv_voxel(row, 0, nz, sx, 1, 1, 1, 1, scale_x, scale_y, scale_z);
                for (int64_t z = 1; z < nz - 1; z++) {
                    float v = row[z];
                    float zp = scale_z * (2.0f * (v - row[z - 1]));
                    float zm = -(scale_z * (2.0f * (row[z + 1] - v)));
                    float ym = -(scale_y * (2.0f * (row[z + nz] - v)));
                    float yp = scale_y * (2.0f * (v - row[z - nz]));
                    float xm = -(scale_x * (2.0f * (row[z + sx] - v)));
                    float xp = scale_x * (2.0f * (v - row[z - sx]));
                    out[z] = ((((zp + zm) + ym) + yp) + xm) + xp;
                }
                out[nz - 1] = tv_voxel(row, nz - 1, nz, sx, 1, 1, 1, 1, scale_x, scale_y, scale_z);
            }
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_march",
                                    "rerf's compiled CPU renderer, called through ctypes (see native_render.py).", -1,
                                    NULL};

PyMODINIT_FUNC PyInit__march(void) { return PyModule_Create(&module); }
