/* The n-point real FFT runs as an n/2-point complex FFT over (even, odd) sample pairs,
 * then one split pass separates the two halves: half the work and no extra buffer. */
#include "kws_fft.h"

/* z[i] * w (complex). */
#define CMUL_RE(zr, zi, wr, wi) ((zr) * (wr) - (zi) * (wi))
#define CMUL_IM(zr, zi, wr, wi) ((zr) * (wi) + (zi) * (wr))

/* In-place iterative FFT of m complex values (re, im interleaved), m a power of two:
 * decimation in time from bit-reversed order, two radix-2 stages (spans L and 2L) per
 * pass over memory, so each value is loaded and stored half as often (a radix-2^2
 * butterfly: four points, twiddles W_2L^2k and W_2L^k, the second times -i for the odd
 * pair). The twiddle exp(-2 pi i j / len) is twiddles[j * 2m / len] of the n = 2m
 * table, so one table serves this FFT and the real-input split pass. */
static void complex_fft(float *z, size_t m, const float *twiddles)
{
    size_t i, j = 0, len = 1;
    for (i = 0; i + 1 < m; i++) { /* bit-reversal permutation */
        size_t bit = m >> 1;
        if (i < j) {
            float re = z[2 * i], im = z[2 * i + 1];
            z[2 * i] = z[2 * j];
            z[2 * i + 1] = z[2 * j + 1];
            z[2 * j] = re;
            z[2 * j + 1] = im;
        }
        while (j & bit) {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
    }
    if (m >= 4) { /* spans 2 and 4: twiddles 1 and -i, no multiplications */
        for (i = 0; i < 2 * m; i += 8) {
            float *p = z + i;
            float a0r = p[0] + p[2], a0i = p[1] + p[3], a1r = p[0] - p[2], a1i = p[1] - p[3];
            float a2r = p[4] + p[6], a2i = p[5] + p[7], a3r = p[4] - p[6], a3i = p[5] - p[7];
            p[0] = a0r + a2r;
            p[1] = a0i + a2i;
            p[4] = a0r - a2r;
            p[5] = a0i - a2i;
            p[2] = a1r + a3i; /* a1 + (-i) a3 */
            p[3] = a1i - a3r;
            p[6] = a1r - a3i;
            p[7] = a1i + a3r;
        }
        len = 4;
    }
    for (; 4 * len <= m; len *= 4) { /* spans 2L and 4L, L = len */
        size_t half = len, stride = 2 * m / (4 * len); /* twiddle index step for span 4L */
        for (size_t start = 0; start < m; start += 4 * len) {
            for (size_t k = 0; k < half; k++) {
                float *p0 = z + 2 * (start + k), *p1 = p0 + 2 * len, *p2 = p1 + 2 * len, *p3 = p2 + 2 * len;
                const float *w2 = twiddles + 4 * k * stride; /* W_2L^k = W_4L^2k */
                const float *w1 = twiddles + 2 * k * stride; /* W_4L^k */
                float b1r = CMUL_RE(p1[0], p1[1], w2[0], w2[1]), b1i = CMUL_IM(p1[0], p1[1], w2[0], w2[1]);
                float b3r = CMUL_RE(p3[0], p3[1], w2[0], w2[1]), b3i = CMUL_IM(p3[0], p3[1], w2[0], w2[1]);
                float a0r = p0[0] + b1r, a0i = p0[1] + b1i, a1r = p0[0] - b1r, a1i = p0[1] - b1i;
                float a2r = p2[0] + b3r, a2i = p2[1] + b3i, a3r = p2[0] - b3r, a3i = p2[1] - b3i;
                float c2r = CMUL_RE(a2r, a2i, w1[0], w1[1]), c2i = CMUL_IM(a2r, a2i, w1[0], w1[1]);
                float c3r = CMUL_RE(a3r, a3i, w1[0], w1[1]), c3i = CMUL_IM(a3r, a3i, w1[0], w1[1]);
                p0[0] = a0r + c2r;
                p0[1] = a0i + c2i;
                p2[0] = a0r - c2r;
                p2[1] = a0i - c2i;
                p1[0] = a1r + c3i; /* a1 + (-i) c3 */
                p1[1] = a1i - c3r;
                p3[0] = a1r - c3i;
                p3[1] = a1i + c3r;
            }
        }
    }
    for (; len < m; len *= 2) { /* an odd number of stages: one radix-2 span 2L */
        size_t stride = 2 * m / (2 * len);
        for (size_t start = 0; start < m; start += 2 * len) {
            for (size_t k = 0; k < len; k++) {
                const float *w = twiddles + 2 * k * stride;
                float *a = z + 2 * (start + k), *b = a + 2 * len;
                float tr = CMUL_RE(b[0], b[1], w[0], w[1]), ti = CMUL_IM(b[0], b[1], w[0], w[1]);
                b[0] = a[0] - tr;
                b[1] = a[1] - ti;
                a[0] += tr;
                a[1] += ti;
            }
        }
    }
}

void kws_power_spectrum(float *buf, size_t n, const float *twiddles)
{
    size_t m = n / 2;
    complex_fft(buf, m, twiddles);
    /* Z = FFT(x[2t] + i x[2t+1]). With E[k] = (Z[k] + conj Z[m-k]) / 2 (even samples' DFT)
     * and O[k] = (Z[k] - conj Z[m-k]) / 2i (odd samples'), X[k] = E + w^k O and
     * X[m-k] = conj(E - w^k O). Pairs (k, m-k) are updated in place. */
    for (size_t k = 1; k <= m / 2; k++) {
        float *p = buf + 2 * k, *q = buf + 2 * (m - k);
        float er = 0.5f * (p[0] + q[0]), ei = 0.5f * (p[1] - q[1]);
        float or_ = 0.5f * (p[1] + q[1]), oi = -0.5f * (p[0] - q[0]);
        float wr = twiddles[2 * k], wi = twiddles[2 * k + 1];
        float tr = wr * or_ - wi * oi, ti = wr * oi + wi * or_;
        p[0] = er + tr;
        p[1] = ei + ti;
        q[0] = er - tr;
        q[1] = ti - ei;
    }
    /* Powers overwrite the spectrum from the front: bin k's power goes to buf[k], whose
     * old value (part of bin k/2) has already been read. X[0] and X[m] are real and both
     * come from Z[0]. */
    {
        float dc = buf[0] + buf[1], nyquist = buf[0] - buf[1];
        buf[0] = dc * dc;
        for (size_t k = 1; k < m; k++) {
            float re = buf[2 * k], im = buf[2 * k + 1];
            buf[k] = re * re + im * im;
        }
        buf[m] = nyquist * nyquist;
    }
}
