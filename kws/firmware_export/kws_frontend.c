#include "kws_frontend.h"

#include <math.h>
#include <string.h>

#include "kws_fft.h"
#include "kws_frontend_tables.h"

void kws_frontend_reset(KwsFrontend *fe)
{
    fe->n_samples = 0;
}

/* Normalised MFCCs of the full window in fe->samples. */
static void compute_frame(KwsFrontend *fe, float features[KWS_N_MFCC])
{
    float log_mel[KWS_N_MELS];
    const float *weight = kws_mel_weights;
    size_t i, m, c;

    for (i = 0; i < KWS_WINDOW_LENGTH; i++) {
        fe->work[i] = fe->samples[i] * kws_window[i];
    }
    for (; i < KWS_FFT_LENGTH; i++) {
        fe->work[i] = 0.0f;
    }
    kws_power_spectrum(fe->work, KWS_FFT_LENGTH, kws_twiddles);

    /* Each mel triangle covers a run of bins; its weights are stored band after band. */
    for (m = 0; m < KWS_N_MELS; m++) {
        float energy = 0.0f;
        const float *power = fe->work + kws_mel_first_bin[m];
        for (i = 0; i < kws_mel_bin_count[m]; i++) {
            energy += power[i] * *weight++;
        }
#if KWS_LOG_PIXEL
        /* The log-mel images' scale: 10 ln(1 + e / floor), saturating at 255. */
        energy = KWS_PIXEL_SCALE * log1pf(energy / KWS_LOG_FLOOR);
        log_mel[m] = energy < KWS_PIXEL_MAX ? energy : KWS_PIXEL_MAX;
#else
        log_mel[m] = logf(energy > KWS_LOG_FLOOR ? energy : KWS_LOG_FLOOR);
#endif
    }
    for (c = 0; c < KWS_N_MFCC; c++) {
        const float *row = kws_dct + c * KWS_N_MELS;
        float sum = 0.0f;
        for (m = 0; m < KWS_N_MELS; m++) {
            sum += row[m] * log_mel[m];
        }
        features[c] = (sum - kws_mean[c]) / kws_std[c];
    }
}

int kws_frontend_push(KwsFrontend *fe, const float **samples, size_t *n_samples,
                      float features[KWS_N_MFCC])
{
    size_t take = KWS_WINDOW_LENGTH - fe->n_samples;
    if (take > *n_samples) {
        take = *n_samples;
    }
    if (take > 0) { /* memcpy from a null pointer is undefined even for 0 bytes */
        memcpy(fe->samples + fe->n_samples, *samples, take * sizeof(float));
        fe->n_samples += take;
        *samples += take;
        *n_samples -= take;
    }
    if (fe->n_samples < KWS_WINDOW_LENGTH) {
        return 0;
    }
    compute_frame(fe, features);
    /* The next window starts one hop later: keep its overlap with this one. */
    memmove(fe->samples, fe->samples + KWS_HOP_LENGTH,
            (KWS_WINDOW_LENGTH - KWS_HOP_LENGTH) * sizeof(float));
    fe->n_samples = KWS_WINDOW_LENGTH - KWS_HOP_LENGTH;
    return 1;
}

void kws_quantize(const float *features, size_t n, int8_t *out)
{
    size_t i;
    for (i = 0; i < n; i++) {
        /* roundf rounds ties away from zero, as TFLite does (not to even). */
        float q = roundf(features[i] / KWS_INPUT_SCALE) + (float)KWS_INPUT_ZERO_POINT;
        out[i] = (int8_t)(q < -128.0f ? -128.0f : (q > 127.0f ? 127.0f : q));
    }
}
