// Built by tools/firmware_parity.py against a TFLM checkout: classifies clips with the
// exported C front-end and the model in TFLM, as kws's Runner.run_clip does (state reset,
// then every frame of the clip; a step model one frame per invoke). stdin: float32 clips
// of CLIP samples each; stdout: per clip, the KWS_N_LABELS probabilities as float32.
#include <stdio.h>
#include <stdlib.h>

#include "kws_frontend.h"
#include "kws_model.h"
#include "model_data.h"

namespace {
alignas(16) uint8_t g_arena[KWS_ARENA_BYTES];
KwsModel g_model;
KwsFrontend g_frontend;
float g_clip[1 << 16];
int8_t g_input[KWS_CLIP_FRAMES * KWS_N_MFCC];
}  // namespace

int main(int argc, char** argv) {
  size_t clip = argc == 2 ? static_cast<size_t>(atol(argv[1])) : 0;
  if (clip == 0 || clip > sizeof(g_clip) / sizeof(g_clip[0]) || g_model.Init(g_arena, KWS_ARENA_BYTES) != kTfLiteOk) {
    fprintf(stderr, "usage: firmware_clips CLIP_SAMPLES < clips.f32 (or the model does not load)\n");
    return 2;
  }
  while (fread(g_clip, sizeof(float), clip, stdin) == clip) {
    const float* next = g_clip;
    size_t n = clip, frames = 0;
    float features[KWS_N_MFCC], probabilities[KWS_N_LABELS];
    kws_frontend_reset(&g_frontend);
    if (g_model.Reset() != kTfLiteOk) return 1;
    while (kws_frontend_push(&g_frontend, &next, &n, features)) {
      kws_quantize(features, KWS_N_MFCC, g_input + (KWS_MODEL_IS_STEP ? 0 : frames * KWS_N_MFCC));
      frames++;
      if (KWS_MODEL_IS_STEP && g_model.Invoke(g_input, probabilities) != kTfLiteOk) return 1;
    }
    if (!KWS_MODEL_IS_STEP && g_model.Invoke(g_input, probabilities) != kTfLiteOk) return 1;
    fwrite(probabilities, sizeof(float), KWS_N_LABELS, stdout);
  }
  fprintf(stderr, "arena used %zu of %d bytes\n", g_model.ArenaUsedBytes(), KWS_ARENA_BYTES);
  return 0;
}
