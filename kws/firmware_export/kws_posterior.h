/* Posterior smoothing, per-label thresholds, re-arming and a refractory period: the
 * decisions of kws.stream.PosteriorSmoother, event for event (C99, no malloc).
 *
 * A label fires when its moving average over the last KWS_SMOOTHING_WINDOW posteriors is
 * the largest of all labels and reaches its threshold (kws_thresholds[]; the silence and
 * unknown labels have an infinite one and never fire), it has fallen KWS_REARM_MARGIN
 * below that threshold since it last fired (re-armed), and at least KWS_REFRACTORY_SECONDS have passed since
 * the last event of any label. Single-precision floats throughout (the M4F's FPU), in the
 * order kws.stream computes them, so that a value at a threshold is decided the same way
 * on both sides; only the refractory test, when a label could fire, uses double time. */
#ifndef KWS_POSTERIOR_H
#define KWS_POSTERIOR_H

#include <stdint.h>

#include "model_data.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float history[KWS_SMOOTHING_WINDOW][KWS_N_LABELS]; /* ring of the latest posteriors */
    unsigned int n_history;                           /* how many are valid */
    unsigned int next;                                /* where the next one goes */
    unsigned char armed[KWS_N_LABELS];
    double last_event;                                /* seconds; -infinity before the first */
} KwsPosterior;

typedef struct {
    int label;      /* index into kws_labels */
    uint32_t frame; /* the frame it fired on, 1 for the first */
    double time;    /* seconds from the start of the stream: kws_frame_time(frame) */
    float score;    /* the smoothed probability that fired */
} KwsEvent;

/* Start a new stream. */
void kws_posterior_reset(KwsPosterior *p);

/* Add the posterior (KWS_N_LABELS probabilities) of frame number `frame` (1 for the
 * first frame of the stream); returns 1 and fills *event when a label fires, else 0. */
int kws_posterior_push(KwsPosterior *p, const float *probabilities, uint32_t frame, KwsEvent *event);

/* Stream time of frame number `frame` (1 for the first): the end of its window, in
 * seconds, computed as kws.stream.Detector.time does (the same double arithmetic). */
double kws_frame_time(uint32_t frame);

#ifdef __cplusplus
}
#endif

#endif /* KWS_POSTERIOR_H */
