/* Posterior smoothing, per-label thresholds, re-arming and a refractory period: the
 * decisions of kws.stream.PosteriorSmoother, event for event (C99, no malloc).
 *
 * A label fires when its moving average over the last KWS_SMOOTHING_WINDOW posteriors is
 * the largest of all labels and reaches its threshold (kws_thresholds[]; the silence and
 * unknown labels have an infinite one and never fire), it has fallen KWS_REARM_MARGIN
 * below that threshold since it last fired (re-armed), and at least KWS_REFRACTORY_SECONDS have passed since
 * the last event of any label. Averages are computed in double, as Python does, so that
 * a value at a threshold is decided the same way on both sides. */
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
    double last_event; /* seconds; -infinity before the first event */
} KwsPosterior;

typedef struct {
    int label;    /* index into kws_labels */
    double time;  /* seconds from the start of the stream */
    double score; /* the smoothed probability that fired */
} KwsEvent;

/* Start a new stream. */
void kws_posterior_reset(KwsPosterior *p);

/* Add the posterior (KWS_N_LABELS probabilities) taken at `time` seconds; returns 1 and
 * fills *event when a label fires, else 0. */
int kws_posterior_push(KwsPosterior *p, const float *probabilities, double time, KwsEvent *event);

/* Stream time of frame number `frame` (1 for the first): the end of its window, in
 * seconds, computed as kws.stream.Detector.time does (the same double arithmetic). */
double kws_frame_time(uint32_t frame);

#ifdef __cplusplus
}
#endif

#endif /* KWS_POSTERIOR_H */
