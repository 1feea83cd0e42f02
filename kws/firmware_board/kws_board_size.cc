// The firmware alone, for its flash and RAM figures: the exported pipeline (front-end,
// model copies, posterior) as kws_example_main.cc runs it, fed from a buffer instead of
// a microphone, with no I/O and no harness. Built, measured from its linker map, not run.
#include "kws_frontend.h"
#include "kws_model.h"
#include "kws_posterior.h"
#include "model_data.h"

namespace {
alignas(16) uint8_t g_arenas[KWS_MODEL_COPIES][KWS_ARENA_BYTES];
KwsFrontend g_frontend;
KwsStreamModel g_model;
KwsPosterior g_posterior;
volatile float g_audio[KWS_HOP_LENGTH];  // stands for the microphone's DMA buffer
}  // namespace

int main() {
  uint8_t* arenas[KWS_MODEL_COPIES];
  for (int i = 0; i < KWS_MODEL_COPIES; i++) {
    arenas[i] = g_arenas[i];
  }
  if (g_model.Init(arenas) != kTfLiteOk) return 1;
  kws_frontend_reset(&g_frontend);
  kws_posterior_reset(&g_posterior);
  int events = 0;
  for (uint32_t frame = 1;; frame++) {
    float audio[KWS_HOP_LENGTH];
    for (int i = 0; i < KWS_HOP_LENGTH; i++) audio[i] = g_audio[i];
    const float* next = audio;
    size_t n = KWS_HOP_LENGTH;
    float features[KWS_N_MFCC], probabilities[KWS_N_LABELS];
    while (kws_frontend_push(&g_frontend, &next, &n, features)) {
      int8_t input[KWS_N_MFCC];
      bool ready;
      KwsEvent event;
      kws_quantize(features, KWS_N_MFCC, input);
      if (g_model.Push(input, probabilities, &ready) != kTfLiteOk) return 1;
      events += ready && kws_posterior_push(&g_posterior, probabilities, kws_frame_time(frame), &event);
    }
    if (events < 0) return events;  // never: keeps the loop's results live
  }
}
