#include "kws_posterior.h"

#include <math.h>

void kws_posterior_reset(KwsPosterior *p)
{
    int i;
    p->n_history = 0;
    p->next = 0;
    for (i = 0; i < KWS_N_LABELS; i++) {
        p->armed[i] = 1;
    }
    p->last_event = -INFINITY;
}

int kws_posterior_push(KwsPosterior *p, const float *probabilities, double time, KwsEvent *event)
{
    double smoothed[KWS_N_LABELS];
    unsigned int h, oldest;
    int i, best = 0;

    for (i = 0; i < KWS_N_LABELS; i++) {
        p->history[p->next][i] = probabilities[i];
    }
    p->next = (p->next + 1) % KWS_SMOOTHING_WINDOW;
    if (p->n_history < KWS_SMOOTHING_WINDOW) {
        p->n_history++;
    }
    /* Summed oldest first, as NumPy's mean over the history does, then divided. */
    oldest = (p->next + KWS_SMOOTHING_WINDOW - p->n_history) % KWS_SMOOTHING_WINDOW;
    for (i = 0; i < KWS_N_LABELS; i++) {
        double sum = 0.0;
        for (h = 0; h < p->n_history; h++) {
            sum += (double)p->history[(oldest + h) % KWS_SMOOTHING_WINDOW][i];
        }
        smoothed[i] = sum / p->n_history;
        if (smoothed[i] < kws_thresholds[i] - KWS_REARM_MARGIN) {
            p->armed[i] = 1;
        }
        if (smoothed[i] > smoothed[best]) {
            best = i; /* the first of equal maxima, as argmax */
        }
    }
    if (smoothed[best] < kws_thresholds[best] || !p->armed[best] ||
        time - p->last_event < KWS_REFRACTORY_SECONDS) {
        return 0;
    }
    p->armed[best] = 0;
    p->last_event = time;
    event->label = best;
    event->time = time;
    event->score = smoothed[best];
    return 1;
}

double kws_frame_time(uint32_t frame)
{
    return (double)(frame - 1) * KWS_FRAME_SECONDS + KWS_WINDOW_SECONDS;
}
