/* The fused update chains of fused.py, written out in C for the CPU.
 *
 * Each function is the Python chain of the same name in fused.py, element by element,
 * with the same float32 operations in the same order (built with -ffp-contract=off, no
 * fast-math), so both give the same numbers up to the last bit of expm1/exp. What C adds
 * is the branch: an element that gets no pulse keeps its weight exactly, as the chain
 * computes it (expm1(0) = 0, and the weight is already inside its bounds), so it is
 * skipped. In a rounded or pulsed update most elements get no pulse.
 *
 * The uniforms of stochastic rounding are counter-based (rng.py: counter_uniform): the
 * element's index plus a key, through the lowbias32 hash, so this loop draws them itself
 * and gets the very bits the torch version gets.
 *
 * Built at first use by native.py with the machine's C compiler; no Python or torch
 * headers are needed. Every array is contiguous float32 of n elements.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

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
    float counts[BLOCK];
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t len = n - start < BLOCK ? n - start : BLOCK;
        if (!rounded_counts(counts, grad + start, scale, key, start, len))
            continue; /* the usual block: no element pulsed */
        for (int64_t j = 0; j < len; j++) {
            float k = counts[j];
            if (k == 0.0f)
                continue;
            int64_t i = start + j;
            int up = grad[i] * scale > 0.0f;
            float log_a = up ? c[LOG_UP] : c[LOG_DOWN];
            float fixed = up ? c[FIX_UP] : c[FIX_DOWN];
            float change = expm1f(k * log_a) * (w[i] - fixed);
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

/* fused._pulses_linear: n_up up pulses, then n_down down pulses, then the order term. */
void pulses_linear(float *w, const float *n_up, const float *n_down, const float *xi_up,
                   const float *xi_down, const float *c, int64_t n) {
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t end = n - start < BLOCK ? n : start + BLOCK;
        if (!any_pulse(n_up + start, n_down + start, end - start))
            continue;
        for (int64_t i = start; i < end; i++) {
            float up = n_up[i], down = n_down[i];
            if (up == 0.0f && down == 0.0f)
                continue;
            float change = expm1f(up * c[LOG_UP]) * (w[i] - c[FIX_UP]);
            if (xi_up)
                change = change + c[NOISE_UP] * sqrtf(up) * xi_up[i];
            float moved = clampf(w[i] + change, c[LO], c[HI]);
            change = expm1f(down * c[LOG_DOWN]) * (moved - c[FIX_DOWN]);
            if (xi_down)
                change = change + c[NOISE_DOWN] * sqrtf(down) * xi_down[i];
            moved = clampf(moved + change, c[LO], c[HI]);
            float damping = expf(up * (c[LOG_UP] / 2) + down * (c[LOG_DOWN] / 2));
            w[i] = clampf(moved + damping * up * down * c[ORDER], c[LO], c[HI]);
        }
    }
}
