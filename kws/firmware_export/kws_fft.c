/* The n-point real FFT runs as an n/2-point complex FFT over (even, odd) sample pairs,
 * then one split pass separates the two halves: half the work and no extra buffer. */
#include "kws_fft.h"

/* In-place iterative radix-2 FFT of m complex values (re, im interleaved). The twiddle
 * for a butterfly span of len is exp(-2 pi i j / len) = twiddles[j * stride] with the
 * n = 2m table, so one table serves the complex FFT and the split pass. */
static void complex_fft(float *z, size_t m, const float *twiddles)
{
    size_t i, j = 0;
    for (i = 0; i + 1 < m; i++) {  /* bit-reversal permutation */
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
    for (size_t len = 2; len <= m; len <<= 1) {
        size_t half = len >> 1, stride = 2 * m / len;
        for (size_t start = 0; start < m; start += len) {
            for (size_t k = 0; k < half; k++) {
                float wr = twiddles[2 * k * stride], wi = twiddles[2 * k * stride + 1];
                float *a = z + 2 * (start + k), *b = z + 2 * (start + k + half);
                float tr = b[0] * wr - b[1] * wi, ti = b[0] * wi + b[1] * wr;
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
