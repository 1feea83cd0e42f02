// Example: audio in -> MFCC front-end -> int8 model -> posterior smoothing -> detections.
//
// On the host it reads 16-bit little-endian mono PCM at KWS_SAMPLE_RATE from stdin and
// prints one line per detection. On a board, replace ReadAudio with your microphone
// driver (an I2S/PDM DMA buffer) and printf with your output. With a step model it runs
// as `kws stream` does by default: two copies of the model, reset KWS_RESET_EVERY / 2
// frames apart (see KwsStreamModel), so every posterior has seen a bounded history.
#include <stdio.h>

#include "kws_frontend.h"
#include "kws_model.h"
#include "kws_posterior.h"
#include "model_data.h"

namespace {

// Everything in static RAM, sized at compile time: no heap.
alignas(16) uint8_t g_arenas[KWS_MODEL_COPIES][KWS_ARENA_BYTES];
KwsFrontend g_frontend;
KwsStreamModel g_model;
KwsPosterior g_posterior;

// Up to `n` samples as floats in [-1, 1]; 0 at the end of the audio.
size_t ReadAudio(float* samples, size_t n) {
  int16_t pcm[KWS_HOP_LENGTH];
  size_t got = fread(pcm, sizeof(pcm[0]), n < KWS_HOP_LENGTH ? n : KWS_HOP_LENGTH, stdin);
  for (size_t i = 0; i < got; i++) {
    samples[i] = pcm[i] / 32768.0f;
  }
  return got;
}

}  // namespace

int main() {
  uint8_t* arenas[KWS_MODEL_COPIES];
  for (int i = 0; i < KWS_MODEL_COPIES; i++) {
    arenas[i] = g_arenas[i];
  }
  if (g_model.Init(arenas) != kTfLiteOk) {
    fprintf(stderr, "kws: the model does not load (arena too small, or an op missing?)\n");
    return 1;
  }
  kws_frontend_reset(&g_frontend);
  kws_posterior_reset(&g_posterior);

  float audio[KWS_HOP_LENGTH];
  uint32_t frame = 0;
  size_t n;
  while ((n = ReadAudio(audio, KWS_HOP_LENGTH)) > 0) {
    const float* next = audio;
    float features[KWS_N_MFCC];
    while (kws_frontend_push(&g_frontend, &next, &n, features)) {
      int8_t input[KWS_N_MFCC];
      float probabilities[KWS_N_LABELS];
      bool ready;
      KwsEvent event;
      frame++;
      kws_quantize(features, KWS_N_MFCC, input);
      if (g_model.Push(input, probabilities, &ready) != kTfLiteOk) {
        fprintf(stderr, "kws: invoke failed\n");
        return 1;
      }
      if (ready && kws_posterior_push(&g_posterior, probabilities, frame, &event)) {
        printf("%s %.3f %.4f\n", kws_labels[event.label], event.time, event.score);
      }
    }
  }
  return 0;
}
