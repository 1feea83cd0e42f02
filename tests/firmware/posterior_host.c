/* Host harness for tests/test_export.py: feeds posteriors (stdin: records of a uint32
 * frame number, 1 for the first frame, and KWS_N_LABELS float32 probabilities) to the
 * exported posterior smoother and prints one line per event: label index, time, score. */
#include <stdint.h>
#include <stdio.h>

#include "kws_posterior.h"

int main(void)
{
    KwsPosterior p;
    uint32_t frame;
    float probabilities[KWS_N_LABELS];
    kws_posterior_reset(&p);
    while (fread(&frame, sizeof(frame), 1, stdin) == 1 &&
           fread(probabilities, sizeof(float), KWS_N_LABELS, stdin) == KWS_N_LABELS) {
        KwsEvent event;
        if (kws_posterior_push(&p, probabilities, frame, &event)) {
            printf("%d %.17g %.17g\n", event.label, event.time, event.score);
        }
    }
    return 0;
}
