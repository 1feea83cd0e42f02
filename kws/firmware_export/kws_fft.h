/* Power spectrum of a real frame: an in-place radix-2 FFT (C99, no malloc). */
#ifndef KWS_FFT_H
#define KWS_FFT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Replaces the n real samples in buf (n a power of two, at least 4) by their power
 * spectrum |X[k]|^2 for k = 0..n/2, in buf[0..n/2]; buf[n/2+1..n-1] are left as scratch.
 * twiddles holds exp(-2 pi i k / n) for k = 0..n/2-1 as (cos, sin) pairs, n floats. */
void kws_power_spectrum(float *buf, size_t n, const float *twiddles);

#ifdef __cplusplus
}
#endif

#endif /* KWS_FFT_H */
