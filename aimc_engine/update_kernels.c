/* The fused update chains of fused.py, written out in C for the CPU.
 *
 * Each function is the Python chain of the same name in fused.py, with the same float32
 * operations in the same order (built with -ffp-contract=off, no fast-math), so both
 * give the same numbers up to the last bit of expm1/exp/sqrt. What C adds is what a loop
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

/* fused._rounded_linear: n = floor(|grad * scale| + u) pulses of sign(grad * scale). */
void rounded_linear(float *w, const float *grad, float scale, uint32_t key, const float *xi,
                    const float *c, int64_t n) {
    pulse_table up_table, down_table;
    fill_table(&up_table, c[LOG_UP]);
    fill_table(&down_table, c[LOG_DOWN]);
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t block = 0; block < blocks; block++) {
        float counts[BLOCK];
        int64_t start = block * BLOCK;
        int64_t len = n - start < BLOCK ? n - start : BLOCK;
        if (!rounded_counts(counts, grad + start, scale, key, start, len))
            continue; /* the usual block: no element pulsed */
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
            w[i] = clampf(w[i] + change, c[LO], c[HI]);
        }
    }
}

/* whether any of len elements gets a pulse (vectorised) */
static int any_pulse(const float *restrict n_up, const float *restrict n_down, int64_t len) {
    int any = 0;
    for (int64_t j = 0; j < len; j++)
        any |= (n_up[j] != 0.0f) | (n_down[j] != 0.0f);
    return any;
}

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
