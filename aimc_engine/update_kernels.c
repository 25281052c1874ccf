/* The fused update chains of fused.py, written out in C for the CPU; below them the
 * whole pulsed update of a tile, linear family (pulsed.py) and curved families
 * (pulsed_curve.py), and the IO model's loops around an MVM's product (mvm.py).
 *
 * Each function is the Python chain of the same name in fused.py (or pulsed.py,
 * pulsed_curve.py, mvm.py), with the same float32 operations in the same order (built
 * with -ffp-contract=off, no fast-math), so both give the same numbers up to the last
 * bit of expm1/exp/pow (and of the normals' log and sincos, polynomials of its own
 * here). What C adds is what a loop
 * can do and a tensor op cannot: skip blocks of elements that get no pulse (their
 * weights come out of the chain unchanged: expm1(0) = 0, and a weight is already inside
 * its bounds), look up expm1(n log a) for whole counts in a table, and count sparse
 * coincidences pair by pair. In a rounded or pulsed update most elements get no pulse.
 *
 * The uniforms of stochastic rounding and pulse trains are counter-based (rng.py:
 * counter_uniform): the element's index plus a key, through the lowbias32 hash, so these
 * loops draw them themselves and get the very bits the torch version gets.
 *
 * Built at first use by native.py with the machine's C compiler; no Python or torch
 * headers are needed. Every array is contiguous float32, row-major.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Loops over large tiles are split among OpenMP threads: built with -fopenmp, the
 * kernels share torch's libgomp (the same soname, already loaded) and so its thread
 * count (torch.set_num_threads). Every element's numbers depend on its index only, so
 * the results do not depend on the number of threads. */
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_num_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif
#define PARALLEL_MIN 32768 /* elements: smaller loops stay on one thread */

/* indices into the constants c, as in fused.py */
enum { LO, HI, LOG_UP, FIX_UP, LOG_DOWN, FIX_DOWN, NOISE_UP, NOISE_DOWN, ORDER };

#define BLOCK 64 /* elements whose counts are drawn, then scanned if any is nonzero */

static inline float counter_uniform(int64_t i, uint32_t key) {
    uint32_t x = (uint32_t)i + key;
    x ^= x >> 16;
    x *= 0x21F0AAADu;
    x ^= x >> 15;
    x *= 0x735A2D97u;
    x ^= x >> 15;
    return ((float)(int32_t)(x >> 8) + 0.5f) * 0x1p-24f; /* < 2^24: exact */
}

/* expm1(k log a) and exp(k log a / 2) for whole pulse counts k < TABLE, per direction:
 * computed once per call, so an element's closed form costs no transcendental call. */
#define TABLE 64

typedef struct {
    float expm1[TABLE]; /* expm1(k log a): the closed form's factor for k pulses */
    float half[TABLE];  /* exp(k log a / 2): the order term's damping for k pulses */
} pulse_table;

static void fill_table(pulse_table *t, float log_a) {
    for (int k = 0; k < TABLE; k++) {
        t->expm1[k] = expm1f((float)k * log_a);
        t->half[k] = expf((float)k * (log_a / 2));
    }
}

/* k whole and below TABLE: its row in the tables (-1 otherwise: compute) */
static inline int table_row(float k) {
    return k >= 0.0f && k < (float)TABLE && k == (float)(int)k ? (int)k : -1;
}

static inline float expm1_pulses(float k, float log_a, const pulse_table *t) {
    int row = table_row(k);
    return row >= 0 ? t->expm1[row] : expm1f(k * log_a);
}

static inline float clampf(float v, float lo, float hi) {
    /* torch.clamp: min(max(v, lo), hi) */
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* counts[j] = floor(|grad[j] * scale| + u(first + j)), the loop the compiler vectorises;
 * returns whether any count is nonzero. */
static int rounded_counts(float *restrict counts, const float *restrict grad, float scale,
                          uint32_t key, int64_t first, int64_t len) {
    int any = 0;
    for (int64_t j = 0; j < len; j++) {
        float k = floorf(fabsf(grad[j] * scale) + counter_uniform(first + j, key));
        counts[j] = k;
        any |= k != 0.0f;
    }
    return any;
}

/* fused._rounded_linear: n = floor(|grad * scale| + u) pulses of sign(grad * scale);
 * moved[b] is block b's sum of |change| (the tile's pulse counter sums them in order). */
void rounded_linear(float *w, const float *grad, float scale, uint32_t key, const float *xi,
                    const float *c, int64_t n, double *moved) {
    pulse_table up_table, down_table;
    fill_table(&up_table, c[LOG_UP]);
    fill_table(&down_table, c[LOG_DOWN]);
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t block = 0; block < blocks; block++) {
        float counts[BLOCK];
        int64_t start = block * BLOCK;
        int64_t len = n - start < BLOCK ? n - start : BLOCK;
        moved[block] = 0.0;
        if (!rounded_counts(counts, grad + start, scale, key, start, len))
            continue; /* the usual block: no element pulsed */
        double sum = 0.0;
        for (int64_t j = 0; j < len; j++) {
            float k = counts[j];
            if (k == 0.0f)
                continue;
            int64_t i = start + j;
            int up = grad[i] * scale > 0.0f;
            float fixed = up ? c[FIX_UP] : c[FIX_DOWN];
            float change = up ? expm1_pulses(k, c[LOG_UP], &up_table)
                              : expm1_pulses(k, c[LOG_DOWN], &down_table);
            change = change * (w[i] - fixed);
            if (xi)
                change = change + (up ? c[NOISE_UP] : c[NOISE_DOWN]) * sqrtf(k) * xi[i];
            float before = w[i];
            w[i] = clampf(before + change, c[LO], c[HI]);
            sum += fabsf(w[i] - before);
        }
        moved[block] = sum;
    }
}

/* whether any of len elements gets a pulse (vectorised) */
static int any_pulse(const float *restrict n_up, const float *restrict n_down, int64_t len) {
    int any = 0;
    for (int64_t j = 0; j < len; j++)
        any |= (n_up[j] != 0.0f) | (n_down[j] != 0.0f);
    return any;
}

/* how many of len elements get a pulse (vectorised) */
static int64_t pulsed_in(const float *restrict n_up, const float *restrict n_down, int64_t len) {
    int64_t touched = 0;
    for (int64_t j = 0; j < len; j++)
        touched += (n_up[j] != 0.0f) | (n_down[j] != 0.0f);
    return touched;
}

/* a block with at least this many pulsed elements draws its normals in vectorised loops
 * (every element's, about as fast as 4 drawn one at a time); the same numbers either way */
#define DENSE 4

/* whether the tables hold every count of a block: whole and below TABLE (vectorised) */
static int tabled(const float *restrict n_up, const float *restrict n_down, int64_t len) {
    int ok = 1;
    for (int64_t j = 0; j < len; j++)
        ok &= (n_up[j] < (float)TABLE) & (n_down[j] < (float)TABLE) &
              (n_up[j] == floorf(n_up[j])) & (n_down[j] == floorf(n_down[j]));
    return ok;
}

/* fused._pulses_linear: n_up up pulses, then n_down down pulses, then the order term.
 * A block with any pulse is computed whole: an element without pulses comes out
 * unchanged (its factors are expm1(0) = 0 and 0 * 0), so the loop has no branch and,
 * where the tables hold the block's counts, vectorises (table lookups as gathers). */
void pulses_linear(float *restrict w, const float *restrict n_up, const float *restrict n_down,
                   const float *restrict xi_up, const float *restrict xi_down,
                   const float *restrict c, int64_t n) {
    const float lo = c[LO], hi = c[HI], log_up = c[LOG_UP], log_down = c[LOG_DOWN];
    const float fix_up = c[FIX_UP], fix_down = c[FIX_DOWN], order = c[ORDER];
    const float noise_up = c[NOISE_UP], noise_down = c[NOISE_DOWN];
    pulse_table up_table, down_table;
    fill_table(&up_table, log_up);
    fill_table(&down_table, log_down);
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t block = 0; block < blocks; block++) {
        int64_t start = block * BLOCK;
        int64_t end = n - start < BLOCK ? n : start + BLOCK;
        if (!any_pulse(n_up + start, n_down + start, end - start))
            continue;
        if (tabled(n_up + start, n_down + start, end - start) && !xi_up && !xi_down) {
            for (int64_t i = start; i < end; i++) {
                float up = n_up[i], down = n_down[i];
                int ku = (int)up, kd = (int)down;
                float moved = clampf(w[i] + up_table.expm1[ku] * (w[i] - fix_up), lo, hi);
                moved = clampf(moved + down_table.expm1[kd] * (moved - fix_down), lo, hi);
                float damping = up_table.half[ku] * down_table.half[kd];
                w[i] = clampf(moved + damping * up * down * order, lo, hi);
            }
            continue;
        }
        for (int64_t i = start; i < end; i++) {
            float up = n_up[i], down = n_down[i];
            float change = expm1_pulses(up, log_up, &up_table) * (w[i] - fix_up);
            if (xi_up)
                change = change + noise_up * sqrtf(up) * xi_up[i];
            float moved = clampf(w[i] + change, lo, hi);
            change = expm1_pulses(down, log_down, &down_table) * (moved - fix_down);
            if (xi_down)
                change = change + noise_down * sqrtf(down) * xi_down[i];
            moved = clampf(moved + change, lo, hi);
            int row_up = table_row(up), row_down = table_row(down);
            float damping = row_up >= 0 && row_down >= 0
                                ? up_table.half[row_up] * down_table.half[row_down]
                                : expf(up * (log_up / 2) + down * (log_down / 2));
            w[i] = clampf(moved + damping * up * down * order, lo, hi);
        }
    }
}

/* fused._manage: update management per sample (pulses.manage_updates). */
void manage(float *restrict a, float *restrict b, float *restrict slots,
            const float *restrict x_max, const float *restrict d_max, float per_pulse,
            float bit_length, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float xm = x_max[i], dm = d_max[i];
        float need = xm * dm * per_pulse;
        float bl = ceilf(need);
        bl = bl < 1.0f ? 1.0f : bl;
        bl = bl > bit_length ? bit_length : bl;
        float d_val = need > bit_length ? dm * bit_length / need : dm;
        float k = per_pulse / bl;
        int active = xm > 0.0f && dm > 0.0f;
        a[i] = active ? sqrtf(k * xm / d_val) : 0.0f;
        b[i] = active ? sqrtf(k * d_val / xm) : 0.0f;
        slots[i] = bl;
    }
}

/* fused._pulse_train: fired[r, j] = floor(u + min(scale[r] |v[r, j]|, 1)) times
 * sign(v[r, j]), u = counter_uniform(r * cols + j, key). */
void pulse_train(float *restrict fired, const float *restrict v, const float *restrict scale,
                 uint32_t key, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        float a = scale[r];
        int64_t first = r * cols;
        for (int64_t j = 0; j < cols; j++) {
            float x = v[first + j];
            float p = a * fabsf(x);
            p = p > 1.0f ? 1.0f : p;
            float fire = floorf(counter_uniform(first + j, key) + p);
            float sign = x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
            fired[first + j] = fire * sign;
        }
    }
}

/* the columns where a row of signed firings is positive (from the front of cols) and
 * negative (from the back); returns how many are positive, *negative the others */
static int64_t fired_columns(int64_t *restrict cols, int64_t *negative,
                             const float *restrict row, int64_t n) {
    int64_t pos = 0, neg = 0;
    for (int64_t j = 0; j < n; j++) {
        if (row[j] > 0.0f)
            cols[pos++] = j;
        else if (row[j] < 0.0f)
            cols[n - 1 - neg++] = j;
    }
    *negative = neg;
    return pos;
}

/* one pulse more on row[j] for each column j in cols[0..n) */
static void add_pulses(float *restrict row, const int64_t *restrict cols, int64_t n) {
    for (int64_t b = 0; b < n; b++)
        row[cols[b]] += 1.0f;
}

/* fused._coincidences, pair by pair: for each slot (row) every fired error i and fired
 * input j make one pulse on (i, j), down if their signs agree, up otherwise. The counts
 * equal the two matrix products' exactly (whole numbers below 2^24). Returns 0, having
 * written nothing, if the firings make more than most_pairs pairs (dense: the products
 * are cheaper), 1 when done (or -1 if out of memory). */
int coincidences(float *restrict n_up, float *restrict n_down, const float *restrict fired_d,
                 const float *restrict fired_x, int64_t rows, int64_t outs, int64_t ins,
                 int64_t most_pairs) {
    int64_t pairs = 0;
#pragma omp parallel for schedule(static) reduction(+ : pairs) if (rows * ins >= PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t nd = 0, nx = 0;
        for (int64_t i = 0; i < outs; i++)
            nd += fired_d[r * outs + i] != 0.0f;
        for (int64_t j = 0; j < ins; j++)
            nx += fired_x[r * ins + j] != 0.0f;
        pairs += nd * nx;
    }
    if (pairs > most_pairs)
        return 0;
    int failed = 0;
    /* each thread owns a band of output rows [lo, hi): no two write one element */
#pragma omp parallel if (outs * ins >= PARALLEL_MIN) reduction(| : failed)
    {
        int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t lo = outs * t / threads, hi = outs * (t + 1) / threads, band = hi - lo;
        memset(n_up + lo * ins, 0, (size_t)(band * ins) * sizeof(float));
        memset(n_down + lo * ins, 0, (size_t)(band * ins) * sizeof(float));
        int64_t *d_cols = malloc((size_t)(band > 0 ? band : 1) * sizeof(int64_t));
        int64_t *x_cols = malloc((size_t)ins * sizeof(int64_t));
        failed = !d_cols || !x_cols;
        for (int64_t r = 0; r < rows && !failed; r++) {
            int64_t d_neg, x_neg;
            int64_t d_pos = fired_columns(d_cols, &d_neg, fired_d + r * outs + lo, band);
            if (d_pos + d_neg == 0)
                continue;
            int64_t x_pos = fired_columns(x_cols, &x_neg, fired_x + r * ins, ins);
            const int64_t *x_negative = x_cols + ins - x_neg;
            for (int64_t a = 0; a < d_pos; a++) { /* d > 0: down with x > 0, up with x < 0 */
                int64_t i = lo + d_cols[a];
                add_pulses(n_down + i * ins, x_cols, x_pos);
                add_pulses(n_up + i * ins, x_negative, x_neg);
            }
            for (int64_t a = band - d_neg; a < band; a++) { /* d < 0: the other way round */
                int64_t i = lo + d_cols[a];
                add_pulses(n_up + i * ins, x_cols, x_pos);
                add_pulses(n_down + i * ins, x_negative, x_neg);
            }
        }
        free(d_cols);
        free(x_cols);
    }
    return failed ? -1 : 1;
}

/* ---- the whole pulsed update of a linear-family tile in one call (pulsed.py) ---- */

/* Box-Muller's two transcendental steps, written to vectorise: libm's logf, cosf and
 * sinf are calls a loop cannot vectorise, and cost some 14 ns a pair where these cost
 * under 1 ns in a vectorised loop. Both are within a float32 ulp or so of the exact
 * value (Cephes' minimax polynomials); rng.py's torch twin reduces the angle the same
 * way. */

/* log u for u in (0, 1), a normal float: u = m 2^e, m in [sqrt(1/2), sqrt(2)), then
 * log(m) by Cephes logf's polynomial in m - 1 and e log 2 in two parts */
static inline float log_unit(float u) {
    uint32_t bits;
    memcpy(&bits, &u, sizeof bits);
    int e = (int)(bits >> 23) - 126;
    bits = (bits & 0x007fffffu) | 0x3f000000u; /* m in [1/2, 1) */
    float m;
    memcpy(&m, &bits, sizeof m);
    int small = m < 0.707106781186547524f;
    e -= small;
    m = m + (small ? m : 0.0f) - 1.0f; /* 2m - 1 or m - 1: in [-0.293, 0.414) */
    float z = m * m;
    float y = ((((((((7.0376836292e-2f * m - 1.1514610310e-1f) * m + 1.1676998740e-1f) * m -
                    1.2420140846e-1f) * m + 1.4249322787e-1f) * m - 1.6668057665e-1f) * m +
                 2.0000714765e-1f) * m - 2.4999993993e-1f) * m + 3.3333331174e-1f) * m * z;
    float fe = (float)e;
    y = y + -2.12194440e-4f * fe;
    y = y + -0.5f * z;
    return m + y + 0.693359375f * fe;
}

/* cos and sin of 2 pi t for t in (0, 1): t less its nearest quarter turn q/4 (exact),
 * times 2 pi, in [-pi/4, pi/4] where Cephes' polynomials hold; the quarter turns swap
 * and negate them */
static inline void sincos_turn(float t, float *c, float *s) {
    float q = floorf(t * 4.0f + 0.5f);
    float r = (t - q * 0.25f) * 6.28318530717958647692f;
    float z = r * r;
    float sn = r + r * z * ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f);
    float cs = 1.0f - 0.5f * z +
               z * z * ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z +
                        4.166664568298827e-2f);
    int k = (int)q, odd = k & 1;
    float bc = odd ? sn : cs, bs = odd ? cs : sn;
    *c = bc * (((k + 1) & 2) ? -1.0f : 1.0f);
    *s = bs * ((k & 2) ? -1.0f : 1.0f);
}

/* both normal numbers of Box-Muller pair i: r cos(theta) and r sin(theta) on the
 * uniforms 2i and 2i + 1 (rng.normal_pair_at) */
static inline void counter_normal_pair(int64_t i, uint32_t key, float *c, float *s) {
    float u1 = counter_uniform(2 * i, key), u2 = counter_uniform(2 * i + 1, key);
    float r = sqrtf(log_unit(u1) * -2.0f);
    sincos_turn(u2, c, s);
    *c = r * *c;
    *s = r * *s;
}

/* counter-based standard normal number i: the first of pair i (rng.normal_at) */
static inline float counter_normal(int64_t i, uint32_t key) {
    float c, s;
    counter_normal_pair(i, key, &c, &s);
    return c;
}

/* the pairs first .. first + len - 1 (len <= BLOCK) into c and s, vectorised: the
 * uniforms, then the logarithms, then the angles, each a loop of its own */
static void normal_pairs(float *restrict c, float *restrict s, int64_t first, uint32_t key,
                         int64_t len) {
    float u1[BLOCK], u2[BLOCK];
    for (int64_t j = 0; j < len; j++) {
        u1[j] = counter_uniform(2 * (first + j), key);
        u2[j] = counter_uniform(2 * (first + j) + 1, key);
    }
    for (int64_t j = 0; j < len; j++)
        u1[j] = sqrtf(log_unit(u1[j]) * -2.0f);
    for (int64_t j = 0; j < len; j++)
        sincos_turn(u2[j], c + j, s + j);
    for (int64_t j = 0; j < len; j++) {
        c[j] = u1[j] * c[j];
        s[j] = u1[j] * s[j];
    }
}

/* indices into the keys and the scalars of pulsed_linear, as in pulsed.py */
enum { K_D, K_X, K_NOISE_PAIR, K_WRITE, K_ORDER, K_NOISE, KEYS };
enum {
    P_PER_PULSE, P_BL, P_MANAGED, P_BOTH, P_DW_MIN, P_SIGMA, P_MULT, P_SPREAD,
    P_WRITE, P_CLIPS, P_REF_HI, P_REF_LO
};
/* the device's per-element arrays: bounds, step scales, slopes, reference bounds */
enum { A_LO, A_HI, A_S_UP, A_S_DOWN, A_G_UP, A_G_DOWN, A_REF_HI, A_REF_LO };

typedef struct {
    const float *lo, *hi, *s_up, *s_down, *g_up, *g_down, *ref_hi, *ref_lo;
    float ref_hi_all, ref_lo_all; /* used where ref_hi / ref_lo are NULL (shared) */
    float dw_min, sigma, spread, write; /* spread: 4 sigma */
    int mult, clips;
    uint32_t keys[KEYS];
    int64_t numel;
} linear_tile;

/* one pulse train row (pulse_train's), signed into fired, then the columns that fired
 * (fired_columns) */
static int64_t fire_row(int64_t *restrict cols, int64_t *negative, float *restrict fired,
                        const float *restrict v, float scale, int64_t first, uint32_t key,
                        int64_t n) {
    for (int64_t j = 0; j < n; j++) { /* as pulse_train, vectorised */
        float x = v[j];
        float p = scale * fabsf(x);
        p = p > 1.0f ? 1.0f : p;
        float fire = floorf(counter_uniform(first + j, key) + p);
        fired[j] = fire * (x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f));
    }
    return fired_columns(cols, negative, fired, n);
}

/* one slot row: the error side of sample s, and where it fires, the input side (hit row
 * *hits), each coincidence one pulse into n_up / n_down (pulses.pulse_train_counts) */
static void slot_row(float *restrict n_up, float *restrict n_down, int64_t *d_cols,
                     int64_t *x_cols, float *fired, const float *x, const float *d, float a,
                     float b, int64_t row, int64_t *hits, int64_t ins, int64_t outs,
                     const uint32_t *k) {
    int64_t d_neg, x_neg;
    int64_t d_pos = fire_row(d_cols, &d_neg, fired, d, a, row * outs, k[K_D], outs);
    if (d_pos + d_neg == 0)
        return;
    int64_t x_pos = fire_row(x_cols, &x_neg, fired, x, b, *hits * ins, k[K_X], ins);
    *hits += 1;
    const int64_t *x_negative = x_cols + ins - x_neg;
    for (int64_t c = 0; c < d_pos; c++) {
        add_pulses(n_down + d_cols[c] * ins, x_cols, x_pos);
        add_pulses(n_up + d_cols[c] * ins, x_negative, x_neg);
    }
    for (int64_t c = outs - d_neg; c < outs; c++) {
        add_pulses(n_up + d_cols[c] * ins, x_cols, x_pos);
        add_pulses(n_down + d_cols[c] * ins, x_negative, x_neg);
    }
}

/* the pulse counts of -lr d^T x: update management per sample (or none), the slot rows
 * sample by sample (slot by slot without management); returns 0, or -1 out of memory */
static int pulse_counts(float *n_up, float *n_down, const float *x, const float *d, int64_t n,
                        int64_t ins, int64_t outs, const float *p, const uint32_t *keys) {
    float *ab = malloc((size_t)(3 * (n > 0 ? n : 1)) * sizeof(float));
    int64_t *d_cols = malloc((size_t)outs * sizeof(int64_t));
    int64_t *x_cols = malloc((size_t)ins * sizeof(int64_t));
    float *fired = malloc((size_t)(ins > outs ? ins : outs) * sizeof(float));
    if (!ab || !d_cols || !x_cols || !fired) {
        free(ab), free(d_cols), free(x_cols), free(fired);
        return -1;
    }
    float *a = ab, *b = ab + n, *slots = ab + 2 * n;
    for (int64_t s = 0; s < n; s++) { /* x_max and d_max first, into b and slots */
        float xm = 0.0f, dm = 0.0f;
        for (int64_t j = 0; j < ins; j++)
            xm = fmaxf(xm, fabsf(x[s * ins + j]));
        for (int64_t i = 0; i < outs; i++)
            dm = fmaxf(dm, fabsf(d[s * outs + i]));
        b[s] = xm, slots[s] = dm;
    }
    int64_t row = 0, hits = 0;
    if (p[P_MANAGED] != 0.0f) {
        float *x_max = malloc((size_t)(2 * (n > 0 ? n : 1)) * sizeof(float));
        if (!x_max) {
            free(ab), free(d_cols), free(x_cols), free(fired);
            return -1;
        }
        memcpy(x_max, b, (size_t)n * sizeof(float));
        memcpy(x_max + n, slots, (size_t)n * sizeof(float));
        manage(a, b, slots, x_max, x_max + n, p[P_PER_PULSE], p[P_BL], n);
        free(x_max);
        for (int64_t s = 0; s < n; s++)
            for (int64_t t = 0; t < (int64_t)slots[s]; t++)
                slot_row(n_up, n_down, d_cols, x_cols, fired, x + s * ins, d + s * outs, a[s], b[s],
                         row++, &hits, ins, outs, keys);
    } else {
        float both = p[P_BOTH]; /* A = B = sqrt(lr / (dw_min BL)) */
        for (int64_t t = 0; t < (int64_t)p[P_BL]; t++)
            for (int64_t s = 0; s < n; s++)
                slot_row(n_up, n_down, d_cols, x_cols, fired, x + s * ins, d + s * outs, both, both,
                         row++, &hits, ins, outs, keys);
    }
    free(ab), free(d_cols), free(x_cols), free(fired);
    return 0;
}

static inline float ref_hi_of(const linear_tile *t, int64_t e) {
    return t->ref_hi ? t->ref_hi[e] : t->ref_hi_all;
}
static inline float ref_lo_of(const linear_tile *t, int64_t e) {
    return t->ref_lo ? t->ref_lo[e] : t->ref_lo_all;
}

/* k > 0 pulses of one direction in closed form from w (pulsed._direction): a^k - 1 is
 * -x for one pulse, else expm1(k log a); log a (0 without a slope) into *log_a where the
 * order term needs it (need_log) or k > 1 */
static float direction(const linear_tile *t, float w, float k, float s, float g, float ref,
                       float sign, float xi, float lo, float hi, int need_log, float *log_a) {
    float dw = (sign * t->dw_min) * s, change;
    if (g == 0.0f) {
        change = k * dw;
        *log_a = 0.0f;
    } else {
        float x = clampf(dw * g / ref, 1e-12f, 1.0f - 1e-7f);
        if (need_log || k != 1.0f)
            *log_a = log1pf(-x);
        change = (k == 1.0f ? -x : expm1f(k * *log_a)) * (w - dw / x);
    }
    if (t->sigma != 0.0f && !t->mult)
        change = change + t->sigma * dw * sqrtf(k) * xi;
    else if (t->sigma != 0.0f)
        change = change * (1.0f + t->sigma * xi / sqrtf(k > 1.0f ? k : 1.0f));
    w = w + change;
    return t->clips ? clampf(w, lo, hi) : w;
}

/* element e's n_up and n_down pulses in closed form, up first, then the order term, with
 * xi_up and xi_down the normals of its pulses' noise (pair e of K_NOISE_PAIR: r cos and
 * r sin); a direction without pulses leaves w as it is (its change is 0, w is inside its
 * bounds) */
static float closed_form(const linear_tile *t, int64_t e, float w, float nu, float nd,
                         float xi_up, float xi_down) {
    float lo = t->lo[e], hi = t->hi[e], g_up = t->g_up[e], g_down = t->g_down[e];
    float ref_hi = ref_hi_of(t, e), ref_lo = ref_lo_of(t, e), log_up = 0.0f, log_down = 0.0f;
    float order = 0.0f; /* the order term: 0 unless both directions have pulses */
    if (nu != 0.0f && nd != 0.0f)
        order = t->dw_min * t->dw_min * t->s_up[e] * t->s_down[e] *
                (g_up / ref_hi - g_down / ref_lo) / 2.0f;
    int need_log = order != 0.0f;
    if (nu != 0.0f)
        w = direction(t, w, nu, t->s_up[e], g_up, ref_hi, 1.0f, xi_up, lo, hi, need_log,
                      &log_up);
    if (nd != 0.0f)
        w = direction(t, w, nd, t->s_down[e], g_down, ref_lo, -1.0f, xi_down, lo, hi, need_log,
                      &log_down);
    if (order == 0.0f)
        return w; /* the order term adds 0: w is already clipped */
    float damping = expf(nu * (log_up / 2.0f) + nd * (log_down / 2.0f));
    w = w + damping * nu * nd * order;
    return t->clips ? clampf(w, lo, hi) : w;
}

/* element e's pulses one at a time in a random order from w (pulsed._replay) */
static float replay(const linear_tile *t, int64_t e, float w, float nu, float nd) {
    float lo = t->lo[e], hi = t->hi[e], s_up = t->s_up[e], s_down = t->s_down[e];
    float g_up = t->g_up[e], g_down = t->g_down[e];
    float ref_hi = ref_hi_of(t, e), ref_lo = ref_lo_of(t, e);
    float per = fmaxf(ceilf((nu + nd) / 64.0f), 1.0f); /* MAX_INTERLEAVED_STEPS */
    int64_t steps = (int64_t)(ceilf(nu / per) + ceilf(nd / per));
    float xi = 0.0f, next_xi = 0.0f; /* steps 2m and 2m + 1 take pair m's two normals */
    for (int64_t s = 0; s < steps; s++) {
        float left = nu + nd;
        int up = counter_uniform(s * t->numel + e, t->keys[K_ORDER]) * left < nu;
        float count = left > per ? per : left;
        float cu = up ? fminf(count, nu) : 0.0f, cd = up ? 0.0f : fminf(count, nd);
        nu = nu - cu, nd = nd - cd;
        float q_up = 1.0f - g_up * w / ref_hi, q_down = 1.0f - g_down * w / ref_lo;
        float step = cu * s_up * q_up - cd * s_down * q_down;
        if (t->sigma != 0.0f) {
            float scale = up ? s_up : s_down;
            if (t->mult)
                scale = scale * (up ? q_up : q_down);
            if (s % 2 == 0)
                counter_normal_pair(s / 2 * t->numel + e, t->keys[K_NOISE], &xi, &next_xi);
            else
                xi = next_xi;
            step = step + sqrtf(cu + cd) * xi * scale * t->sigma;
        }
        w = w + t->dw_min * step;
        if (t->clips)
            w = clampf(w, lo, hi);
    }
    return w;
}

/* whether element e's pulses of both signs may reach a bound (pulsed._risky): its n
 * pulses of one sign travel at most n times its largest step (its larger step scale times
 * the largest response at its own bounds), plus 4 sigma of all its pulses' noise */
static int order_matters(const linear_tile *t, int64_t e, float w, float nu, float nd) {
    if (!t->clips || nu == 0.0f || nd == 0.0f)
        return 0;
    float lo = t->lo[e], hi = t->hi[e], ref_hi = ref_hi_of(t, e), ref_lo = ref_lo_of(t, e);
    float q = fmaxf(fmaxf(fabsf(1.0f - t->g_up[e] * lo / ref_hi),
                          fabsf(1.0f - t->g_up[e] * hi / ref_hi)),
                    fmaxf(fabsf(1.0f - t->g_down[e] * lo / ref_lo),
                          fabsf(1.0f - t->g_down[e] * hi / ref_lo)));
    float reach = t->dw_min * fmaxf(t->s_up[e], t->s_down[e]);
    float step = reach * q, noise = reach * (t->mult ? t->spread * q : t->spread);
    float spread = noise != 0.0f ? sqrtf(nu + nd) * noise : 0.0f;
    return w + nu * step + spread >= hi || w - nd * step - spread <= lo;
}

static linear_tile tile_of(const float *const *arrays, const float *p, const int64_t *keys,
                           int64_t numel) {
    linear_tile t = {arrays[A_LO], arrays[A_HI], arrays[A_S_UP], arrays[A_S_DOWN],
                     arrays[A_G_UP], arrays[A_G_DOWN], arrays[A_REF_HI], arrays[A_REF_LO],
                     p[P_REF_HI], p[P_REF_LO], p[P_DW_MIN], p[P_SIGMA], p[P_SPREAD],
                     p[P_WRITE], p[P_MULT] != 0.0f, p[P_CLIPS] != 0.0f, {0}, numel};
    for (int k = 0; k < KEYS; k++)
        t.keys[k] = (uint32_t)keys[k];
    return t;
}

/* sum |change| of the blocks, in block order whatever the threads (the tile's pulse
 * counter: tiles.py); frees moved */
static double total_moved(double *moved, int64_t blocks) {
    double total = 0.0;
    for (int64_t b = 0; b < blocks; b++)
        total += moved[b];
    free(moved);
    return total;
}

/* pulsed._apply: each element's n_up and n_down pulses in closed form, or one at a time
 * where their order may matter, and under write noise (weight, else NULL) fresh read
 * noise for every touched element; state and weight are updated in place, and *moved
 * is the sum of |change| of the state. Elements are independent (their numbers are
 * counter-based): large tiles are split among threads. Returns 0, or -1 out of memory
 * (nothing written). */
int apply_linear(float *restrict state, float *restrict weight, const float *restrict n_up,
                 const float *restrict n_down, int64_t numel, const float *const *arrays,
                 const float *p, const int64_t *keys, double *total) {
    linear_tile t = tile_of(arrays, p, keys, numel);
    int64_t blocks = (numel + BLOCK - 1) / BLOCK;
    double *moved = calloc((size_t)(blocks > 0 ? blocks : 1), sizeof(double));
    if (!moved)
        return -1;
#pragma omp parallel for schedule(static) if (numel >= PARALLEL_MIN)
    for (int64_t block = 0; block < blocks; block++) {
        int64_t start = block * BLOCK, len = numel - start < BLOCK ? numel - start : BLOCK;
        int64_t touched = pulsed_in(n_up + start, n_down + start, len);
        if (touched == 0)
            continue;
        double sum = 0.0;
        int vector = touched >= DENSE; /* the block's normals in vectorised loops */
        float xi_up[BLOCK], xi_down[BLOCK], xi_write[BLOCK], unused[BLOCK];
        if (vector && t.sigma != 0.0f)
            normal_pairs(xi_up, xi_down, start, t.keys[K_NOISE_PAIR], len);
        if (vector && weight)
            normal_pairs(xi_write, unused, start, t.keys[K_WRITE], len);
        for (int64_t j = 0; j < len; j++) {
            int64_t e = start + j;
            float nu = n_up[e], nd = n_down[e];
            if (nu == 0.0f && nd == 0.0f)
                continue;
            if (!vector && t.sigma != 0.0f)
                counter_normal_pair(e, t.keys[K_NOISE_PAIR], xi_up + j, xi_down + j);
            float w = state[e];
            state[e] = order_matters(&t, e, w, nu, nd)
                           ? replay(&t, e, w, nu, nd)
                           : closed_form(&t, e, w, nu, nd, xi_up[j], xi_down[j]);
            sum += fabsf(state[e] - w);
            if (weight)
                weight[e] = state[e] + t.write * (vector ? xi_write[j]
                                                         : counter_normal(e, t.keys[K_WRITE]));
        }
        moved[block] = sum;
    }
    *total = total_moved(moved, blocks);
    return 0;
}

/* the apply step of a family's whole pulsed update: apply_linear, apply_curve */
typedef int (*apply_kernel)(float *restrict, float *restrict, const float *restrict,
                            const float *restrict, int64_t, const float *const *, const float *,
                            const int64_t *, double *);

/* pulsed.pulsed_update_: the pulse counts of -lr d^T x (pulses.pulse_train_counts), then
 * the family's apply (*total: sum |change|). Returns 0, or -1 out of memory (nothing
 * written). */
static int counts_then(apply_kernel apply, float *restrict state, float *restrict weight,
                       const float *x, const float *d, int64_t n, int64_t ins, int64_t outs,
                       const float *const *arrays, const float *p, const int64_t *keys,
                       double *total) {
    int64_t numel = ins * outs;
    uint32_t k[KEYS];
    for (int i = 0; i < KEYS; i++)
        k[i] = (uint32_t)keys[i];
    float *counts = calloc((size_t)(2 * (numel > 0 ? numel : 1)), sizeof(float));
    int failed = !counts || pulse_counts(counts, counts + numel, x, d, n, ins, outs, p, k) ||
                 apply(state, weight, counts, counts + numel, numel, arrays, p, keys, total);
    free(counts);
    return failed ? -1 : 0;
}

/* counts_then on a linear-family tile */
int pulsed_linear(float *restrict state, float *restrict weight, const float *x,
                  const float *d, int64_t n, int64_t ins, int64_t outs,
                  const float *const *arrays, const float *p, const int64_t *keys,
                  double *total) {
    return counts_then(apply_linear, state, weight, x, d, n, ins, outs, arrays, p, keys, total);
}

/* ---- the whole pulsed update of a curved-family tile in one call (pulsed_curve.py) ---- */

/* the curved families (pulsed_curve.py: FAMILY_IDS) */
enum { F_POWER, F_EXP, F_EXP_STEP, F_EXP_STEP_SAFE, F_SOFTBOUNDS_REFERENCE };
/* indices into the scalars of pulsed_curve after pulse_counts' (P_PER_PULSE ... P_BOTH) */
enum {
    C_DW_MIN = 4, C_SIGMA, C_MULT, C_WRITE, C_FAMILY, C_NOISE_ADD, C_NOISE_SLOPE,
    C_COMPLEX, C_CURVE /* the family's constants from here on */
};
/* the device's per-element arrays: bounds, step scales, reference (NULL without one) */
enum { B_LO, B_HI, B_S_UP, B_S_DOWN, B_REFERENCE };

typedef struct {
    const float *lo, *hi, *s_up, *s_down, *reference;
    const float *curve; /* the family's constants (C_CURVE ...) */
    float dw_min, sigma, write, noise_add, noise_slope;
    int family, mult, complex_noise;
    uint32_t keys[KEYS];
    int64_t numel;
} curve_tile;

/* one element being replayed (pulsed_curve.replay): what is left of its pulses, its
 * weight, the second normal of its current Box-Muller pair, its constants, and the
 * reciprocals of what its response divides by (a division on the chain from one step's
 * weight to the next costs more than the rest of a step; the torch twin divides, and the
 * two differ by a float32 ulp in the response's argument) */
typedef struct {
    int64_t e, steps;
    float w, nu, nd, per, next_xi, lo, hi, s_up, s_down, r;
    float inv_span, inv_up, inv_down; /* 1/(hi - lo), 1/(hi + r), 1/(lo + r) */
} replaying;

static replaying replay_start(const curve_tile *t, int64_t e, float w, float nu, float nd) {
    float per = fmaxf(ceilf((nu + nd) / 64.0f), 1.0f); /* MAX_INTERLEAVED_STEPS */
    float lo = t->lo[e], hi = t->hi[e], r = t->reference ? t->reference[e] : 0.0f;
    replaying out = {e, (int64_t)(ceilf(nu / per) + ceilf(nd / per)), w, nu, nd, per, 0.0f,
                     lo, hi, t->s_up[e], t->s_down[e], r, 1.0f / (hi - lo), 1.0f / (hi + r),
                     1.0f / (lo + r)};
    return out;
}

/* q_+ (up) or q_- of a replayed element at w (devices/power.py, exp.py, exp_step.py,
 * reference.py): a step moves one direction only, so only its response is computed */
static float curve_q(const curve_tile *t, const replaying *r, float w, int up) {
    const float *c = t->curve;
    switch (t->family) {
    case F_POWER: /* ((hi - w)/span)^gamma, ((w - lo)/span)^gamma */
        return powf(fmaxf((up ? r->hi - w : w - r->lo) * r->inv_span, 0.0f), c[0]);
    case F_EXP: /* expm1(g (1 - w/bound)) / expm1(g); g = 0: soft bounds */
        if (c[0] == 0.0f)
            return 1.0f - w * (up ? r->inv_up : r->inv_down);
        return expm1f(c[0] * (1.0f - w * (up ? r->inv_up : r->inv_down))) / c[1];
    case F_EXP_STEP:
    case F_EXP_STEP_SAFE: { /* z = 2a w/(hi - lo) + b; max(1 - A exp(+-gamma z), 0) */
        if (t->family == F_EXP_STEP_SAFE && !(r->hi - r->lo > 0.0f))
            return 0.0f; /* a corrupt element's bounds meet: no pulse moves it */
        float z = 2.0f * c[0] * w * r->inv_span + c[1];
        return up ? fmaxf(1.0f - c[2] * expf(c[4] * z), 0.0f)
                  : fmaxf(1.0f - c[3] * expf(-c[5] * z), 0.0f);
    }
    default: { /* soft bounds on the state g = w + r against b = bound + r */
        float b = (up ? r->hi : r->lo) + r->r;
        return (up ? b > 0.0f : b < 0.0f) ? 1.0f - (w + r->r) * (up ? r->inv_up : r->inv_down)
                                          : 1.0f;
    }
    }
}

/* step s of an element's pulses in a random order, the response read again first; the
 * normals of steps 0 and 1 are pair_0 when already drawn (apply_curve), NULL otherwise */
static void replay_step(const curve_tile *t, replaying *r, int64_t s, const float *pair_0) {
    float left = r->nu + r->nd;
    int up = counter_uniform(s * t->numel + r->e, t->keys[K_ORDER]) * left < r->nu;
    float count = left > r->per ? r->per : left;
    float cu = up ? fminf(count, r->nu) : 0.0f, cd = up ? 0.0f : fminf(count, r->nd);
    r->nu = r->nu - cu, r->nd = r->nd - cd;
    float w = r->w, q = curve_q(t, r, w, up);
    /* the torch twin's cu s_up q_up - cd s_down q_down, one term being 0 */
    float step = up ? cu * r->s_up * q : -(cd * r->s_down * q);
    if (t->sigma != 0.0f) {
        float scale = up ? r->s_up : r->s_down, xi;
        if (t->complex_noise) /* ExpStep's: |s q| + (add + slope |w|) / dw_min */
            scale = fabsf(scale * q) + (fabsf(w) * t->noise_slope + t->noise_add) / t->dw_min;
        else if (t->mult)
            scale = scale * q;
        if (s == 0 && pair_0) /* steps 2m and 2m + 1 take pair m's two normals */
            xi = pair_0[0], r->next_xi = pair_0[1];
        else if (s % 2 == 0)
            counter_normal_pair(s / 2 * t->numel + r->e, t->keys[K_NOISE], &xi, &r->next_xi);
        else
            xi = r->next_xi;
        step = step + sqrtf(cu + cd) * xi * scale * t->sigma;
    }
    r->w = clampf(w + t->dw_min * step, r->lo, r->hi);
}

static curve_tile curve_tile_of(const float *const *arrays, const float *p,
                                const int64_t *keys, int64_t numel) {
    curve_tile t = {arrays[B_LO], arrays[B_HI], arrays[B_S_UP], arrays[B_S_DOWN],
                    arrays[B_REFERENCE], p + C_CURVE, p[C_DW_MIN], p[C_SIGMA], p[C_WRITE],
                    p[C_NOISE_ADD], p[C_NOISE_SLOPE], (int)p[C_FAMILY], p[C_MULT] != 0.0f,
                    p[C_COMPLEX] != 0.0f, {0}, numel};
    for (int k = 0; k < KEYS; k++)
        t.keys[k] = (uint32_t)keys[k];
    return t;
}

/* pulsed_curve._apply: each element's pulses replayed one at a time, then under write
 * noise (weight, else NULL) fresh read noise for every touched element; in place, and
 * *total the sum of |change| of the state. Elements are independent (counter-based
 * numbers): large tiles are split among threads. Returns 0, or -1 out of memory
 * (nothing written). */
int apply_curve(float *restrict state, float *restrict weight, const float *restrict n_up,
                const float *restrict n_down, int64_t numel, const float *const *arrays,
                const float *p, const int64_t *keys, double *total) {
    curve_tile t = curve_tile_of(arrays, p, keys, numel);
    int64_t blocks = (numel + BLOCK - 1) / BLOCK;
    double *moved = calloc((size_t)(blocks > 0 ? blocks : 1), sizeof(double));
    if (!moved)
        return -1;
#pragma omp parallel for schedule(static) if (numel >= PARALLEL_MIN)
    for (int64_t block = 0; block < blocks; block++) {
        int64_t start = block * BLOCK, len = numel - start < BLOCK ? numel - start : BLOCK;
        int64_t touched = pulsed_in(n_up + start, n_down + start, len);
        moved[block] = 0.0;
        if (touched == 0)
            continue;
        /* a dense block draws its first pulse pairs' and write noise's normals in
         * vectorised loops (the same numbers as one at a time) */
        int vector = touched >= DENSE;
        float xi_0[BLOCK], xi_1[BLOCK], xi_write[BLOCK], unused[BLOCK];
        if (vector && t.sigma != 0.0f)
            normal_pairs(xi_0, xi_1, start, t.keys[K_NOISE], len);
        if (vector && weight)
            normal_pairs(xi_write, unused, start, t.keys[K_WRITE], len);
        /* the block's pulsed elements replayed step by step side by side: the steps of
         * one element depend on each other (the response reads the weight the last
         * step left), those of different elements do not, so the processor overlaps
         * them; each element's numbers are those of its own loop */
        replaying live[BLOCK];
        int64_t n = 0, most = 0;
        for (int64_t j = 0; j < len; j++)
            if (n_up[start + j] != 0.0f || n_down[start + j] != 0.0f) {
                live[n] = replay_start(&t, start + j, state[start + j], n_up[start + j],
                                       n_down[start + j]);
                most = live[n].steps > most ? live[n].steps : most;
                n++;
            }
        int drawn = vector && t.sigma != 0.0f;
        for (int64_t step = 0; step < most; step++)
            for (int64_t k = 0; k < n; k++) {
                if (step >= live[k].steps)
                    continue;
                int64_t j = live[k].e - start;
                float pair[2] = {drawn ? xi_0[j] : 0.0f, drawn ? xi_1[j] : 0.0f};
                replay_step(&t, live + k, step, drawn ? pair : NULL);
            }
        double sum = 0.0;
        for (int64_t k = 0; k < n; k++) {
            int64_t e = live[k].e, j = e - start;
            sum += fabsf(live[k].w - state[e]);
            state[e] = live[k].w;
            if (weight)
                weight[e] = state[e] + t.write * (vector ? xi_write[j]
                                                         : counter_normal(e, t.keys[K_WRITE]));
        }
        moved[block] = sum;
    }
    *total = total_moved(moved, blocks);
    return 0;
}

/* counts_then on a curved-family tile */
int pulsed_curve(float *restrict state, float *restrict weight, const float *x, const float *d,
                 int64_t n, int64_t ins, int64_t outs, const float *const *arrays,
                 const float *p, const int64_t *keys, double *total) {
    return counts_then(apply_curve, state, weight, x, d, n, ins, outs, arrays, p, keys, total);
}

/* ---- the IO model of an MVM around its product (mvm.py) ---- */

/* quantise: clip to +-bound, round half to even onto the grid of the step (torch.round) */
static inline float quantisef(float v, float bound, float step) {
    return rintf(clampf(v, -bound, bound) / step) * step;
}

/* mvm.analog_mvm's input side, row by row: noise management (the row divided by its max
 * |x|, at least 1e-30, into scale; scale 1 without it), then the DAC, into xq. */
void io_inputs(float *restrict xq, float *restrict scale, const float *restrict x,
               int64_t rows, int64_t cols, float bound, float step, int managed) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        float m = 1.0f;
        if (managed) {
            m = 0.0f;
            for (int64_t j = 0; j < cols; j++)
                m = fmaxf(m, fabsf(row[j]));
            m = m < 1e-30f ? 1e-30f : m;
        }
        scale[r] = m;
        for (int64_t j = 0; j < cols; j++)
            xq[r * cols + j] = quantisef(managed ? row[j] / m : row[j], bound, step);
    }
}

/* mvm.analog_mvm's output side of y = xq W^T, in place: output noise (noise times xi,
 * where xi is not NULL); then, if check is set and an output reaches +-bound, 1 (bound
 * management must redo rows: the caller goes on as torch ops); else the ADC and the
 * rescale by each row's scale, and 0. */
int io_outputs(float *restrict y, const float *restrict xi, const float *restrict scale,
               int64_t rows, int64_t cols, float noise, float bound, float step, int check) {
    int64_t n = rows * cols;
    if (xi)
        for (int64_t i = 0; i < n; i++)
            y[i] = y[i] + noise * xi[i];
    if (check) {
        int clipped = 0;
        for (int64_t i = 0; i < n; i++)
            clipped |= fabsf(y[i]) >= bound;
        if (clipped)
            return 1;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            y[r * cols + j] = quantisef(y[r * cols + j], bound, step) * scale[r];
    return 0;
}

/* bound management (mvm._bound_managed) in three loops around torch's product and its
 * noise draw, the same float operations: the rows whose outputs reach +-bound, into idx
 * (returns how many) */
int64_t clipped_rows(int64_t *restrict idx, const float *restrict y, int64_t rows,
                     int64_t cols, float bound) {
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++) {
        int clipped = 0;
        for (int64_t j = 0; j < cols; j++)
            clipped |= fabsf(y[r * cols + j]) >= bound;
        if (clipped)
            idx[n++] = r;
    }
    return n;
}

/* the listed rows' halving factors halved, and their inputs x times the new factor
 * through the DAC, into xq (n, cols) */
void halved_rows(float *restrict xq, float *restrict halving, const float *restrict x,
                 const int64_t *restrict idx, int64_t n, int64_t cols, float bound,
                 float step) {
    for (int64_t k = 0; k < n; k++) {
        int64_t r = idx[k];
        float h = halving[r] * 0.5f;
        halving[r] = h;
        for (int64_t j = 0; j < cols; j++)
            xq[k * cols + j] = quantisef(x[r * cols + j] * h, bound, step);
    }
}

/* the listed rows of y replaced by the new outputs y_new (n, cols), plus noise times xi
 * where xi is not NULL */
void replace_rows(float *restrict y, const float *restrict y_new, const float *restrict xi,
                  const int64_t *restrict idx, int64_t n, int64_t cols, float noise) {
    for (int64_t k = 0; k < n; k++)
        for (int64_t j = 0; j < cols; j++)
            y[idx[k] * cols + j] =
                xi ? y_new[k * cols + j] + noise * xi[k * cols + j] : y_new[k * cols + j];
}

/* the ADC and the rescale by scale / halving, in place */
void managed_outputs(float *restrict y, const float *restrict scale,
                     const float *restrict halving, int64_t rows, int64_t cols, float bound,
                     float step) {
    for (int64_t r = 0; r < rows; r++) {
        float factor = scale[r] / halving[r];
        for (int64_t j = 0; j < cols; j++)
            y[r * cols + j] = quantisef(y[r * cols + j], bound, step) * factor;
    }
}

