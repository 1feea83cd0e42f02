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

int kws_posterior_push(KwsPosterior *p, const float *probabilities, uint32_t frame, KwsEvent *event)
{
    float best_score = -1.0f;
    unsigned int h, oldest;
    int i, best = 0;
    double time;

    for (i = 0; i < KWS_N_LABELS; i++) {
        p->history[p->next][i] = probabilities[i];
    }
    p->next = (p->next + 1) % KWS_SMOOTHING_WINDOW;
    if (p->n_history < KWS_SMOOTHING_WINDOW) {
        p->n_history++;
    }
    /* Summed oldest first in float, then divided: kws.stream.mean_oldest_first's arithmetic. */
    oldest = (p->next + KWS_SMOOTHING_WINDOW - p->n_history) % KWS_SMOOTHING_WINDOW;
    for (i = 0; i < KWS_N_LABELS; i++) {
        float sum = 0.0f, smoothed;
        for (h = 0; h < p->n_history; h++) {
            sum += p->history[(oldest + h) % KWS_SMOOTHING_WINDOW][i];
        }
        smoothed = sum / (float)p->n_history;
        if (smoothed < kws_thresholds[i] - KWS_REARM_MARGIN) {
            p->armed[i] = 1;
        }
        if (smoothed > best_score) {
            best = i; /* the first of equal maxima, as argmax */
            best_score = smoothed;
        }
    }
    if (best_score < kws_thresholds[best] || !p->armed[best]) {
        return 0;
    }
    /* Only now, and rarely, the refractory test in double: Python's stream time. */
    time = kws_frame_time(frame);
    if (time - p->last_event < KWS_REFRACTORY_SECONDS) {
        return 0;
    }
    p->armed[best] = 0;
    p->last_event = time;
    event->label = best;
    event->frame = frame;
    event->time = time;
    event->score = best_score;
    return 1;
}

double kws_frame_time(uint32_t frame)
{
    return (double)(frame - 1) * KWS_FRAME_SECONDS + KWS_WINDOW_SECONDS;
}
