/* Host harness for tests/test_export.py: runs the exported C front-end over float32
 * samples from stdin and writes, per frame, the KWS_N_MFCC float32 features and their
 * KWS_N_MFCC int8 quantised values to stdout.
 * Usage: frontend_host CHUNK CLIP  (chunk: samples a push; clip: samples between
 * front-end resets, 0 for one stream). */
#include <stdio.h>
#include <stdlib.h>

#include "kws_frontend.h"

int main(int argc, char **argv)
{
    static float audio[1 << 16];
    KwsFrontend fe;
    size_t chunk, clip, since_reset = 0;
    if (argc != 3 || (chunk = (size_t)atol(argv[1])) == 0 || chunk > sizeof(audio) / sizeof(audio[0])) {
        fprintf(stderr, "usage: frontend_host CHUNK CLIP < samples.f32\n");
        return 2;
    }
    clip = (size_t)atol(argv[2]);
    kws_frontend_reset(&fe);
    for (;;) {
        size_t want = clip && clip - since_reset < chunk ? clip - since_reset : chunk;
        size_t n = fread(audio, sizeof(float), want, stdin);
        const float *next = audio;
        float features[KWS_N_MFCC];
        int8_t quantised[KWS_N_MFCC];
        if (n == 0) {
            return 0;
        }
        while (kws_frontend_push(&fe, &next, &n, features)) {
            kws_quantize(features, KWS_N_MFCC, quantised);
            fwrite(features, sizeof(float), KWS_N_MFCC, stdout);
            fwrite(quantised, 1, KWS_N_MFCC, stdout);
        }
        since_reset += (size_t)(next - audio);
        if (clip && since_reset == clip) {
            kws_frontend_reset(&fe);
            since_reset = 0;
        }
    }
}
