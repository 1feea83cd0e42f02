// Test harness for the exported firmware, built for the emulated board (QEMU mps2-an386,
// files over semihosting) and for the host from the same sources. Reads kws_in.bin and
// writes kws_out.bin in the working directory (little-endian):
//
//   in:  "KWS1", u32 mode, u32 count, then per mode:
//        mode 0 (clips, as kws eval):  count clips of
//               u32 lead (frames of digital silence first), u32 n, n x i16 samples
//               -> per clip: KWS_N_LABELS x f32 probabilities, u32 front-end and
//                  u32 model instructions for the whole clip
//        mode 1 (stream, as kws stream): count x i16 samples
//               -> per frame: u32 front-end, model and posterior instructions,
//                  i32 event label (-1: none), f32 event score
//   out: "KWS1", u32 KWS_N_LABELS, u32 arena bytes used, then the records above, then
//        u32 op kinds, and per kind: char[32] op name, u32 invokes, u64 instructions.
//
// A sample is x / 32768 as a float. Instructions are 0 off the board (kws_board.h).
#include <stdio.h>
#include <string.h>

#include "kws_board.h"
#include "kws_frontend.h"
#include "kws_model.h"
#include "kws_posterior.h"
#include "model_data.h"

namespace {

// Instructions per op kind, summed over every invoke of every copy.
class OpCounter : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    int i = 0;
    while (i < kinds_ && strcmp(names_[i], tag) != 0) i++;
    if (i == kinds_ && kinds_ < kMaxKinds) {
      strncpy(names_[kinds_++], tag, sizeof(names_[0]) - 1);
    }
    starts_[i % kMaxKinds] = kws_instructions();
    return static_cast<uint32_t>(i % kMaxKinds);
  }
  void EndEvent(uint32_t kind) override {
    instructions_[kind] += static_cast<uint32_t>(kws_instructions() - starts_[kind]);
    calls_[kind]++;
  }
  void Write(FILE* out) const {
    uint32_t kinds = static_cast<uint32_t>(kinds_);
    fwrite(&kinds, sizeof(kinds), 1, out);
    for (int i = 0; i < kinds_; i++) {
      fwrite(names_[i], 1, sizeof(names_[i]), out);
      fwrite(&calls_[i], sizeof(calls_[i]), 1, out);
      fwrite(&instructions_[i], sizeof(instructions_[i]), 1, out);
    }
  }

 private:
  static constexpr int kMaxKinds = 16;
  int kinds_ = 0;
  char names_[kMaxKinds][32] = {};
  uint32_t starts_[kMaxKinds] = {}, calls_[kMaxKinds] = {};
  uint64_t instructions_[kMaxKinds] = {};  // a long stream passes 2^32
};

alignas(16) uint8_t g_arenas[KWS_MODEL_COPIES][KWS_ARENA_BYTES];
KwsFrontend g_frontend;
KwsStreamModel g_stream;
KwsPosterior g_posterior;
OpCounter g_ops;
float g_silence[KWS_N_MFCC];  // the features of a window of zeros
FILE* g_in;
FILE* g_out;

bool ReadU32(uint32_t* value) { return fread(value, sizeof(*value), 1, g_in) == 1; }
void WriteU32(uint32_t value) { fwrite(&value, sizeof(value), 1, g_out); }

// Up to KWS_HOP_LENGTH samples of the input as floats; returns how many.
size_t ReadSamples(float* samples, size_t n) {
  int16_t pcm[KWS_HOP_LENGTH];
  size_t got = fread(pcm, sizeof(pcm[0]), n < KWS_HOP_LENGTH ? n : KWS_HOP_LENGTH, g_in);
  for (size_t i = 0; i < got; i++) {
    samples[i] = pcm[i] / 32768.0f;
  }
  return got;
}

// One clip, as kws.runtime's run_clip on kws.features.clip_features: the model's state
// reset, `lead` silent frames, the frames of the clip's n samples, then silent frames up
// to KWS_CLIP_FRAMES (samples past the last whole window make no frame).
bool RunClip(KwsModel* model, uint32_t lead, uint32_t n) {
  static int8_t input[KWS_CLIP_FRAMES * KWS_N_MFCC];
  float features[KWS_N_MFCC], probabilities[KWS_N_LABELS], audio[KWS_HOP_LENGTH];
  const float* next = audio;
  size_t pending = 0;  // samples read but not yet pushed
  uint32_t frontend = 0, invokes = 0;
  kws_frontend_reset(&g_frontend);
  if (model->Reset() != kTfLiteOk) return false;
  for (uint32_t frames = 0; frames < KWS_CLIP_FRAMES; frames++) {
    const float* frame = g_silence;
    if (frames >= lead) {
      uint32_t start = kws_instructions();
      int ready = 0;
      while (!ready && (pending > 0 || n > 0)) {
        if (pending == 0) {
          if ((pending = ReadSamples(audio, n)) == 0) return false;  // the input ended early
          n -= static_cast<uint32_t>(pending);
          next = audio;
        }
        ready = kws_frontend_push(&g_frontend, &next, &pending, features);
      }
      frontend += kws_instructions() - start;
      if (ready) frame = features;
    }
    kws_quantize(frame, KWS_N_MFCC, input + (KWS_MODEL_IS_STEP ? 0 : frames * KWS_N_MFCC));
    if (KWS_MODEL_IS_STEP) {
      uint32_t start = kws_instructions();
      if (model->Invoke(input, probabilities) != kTfLiteOk) return false;
      invokes += kws_instructions() - start;
    }
  }
  while (n > 0) {  // the rest of a clip longer than KWS_CLIP_FRAMES
    size_t got = ReadSamples(audio, n);
    if (got == 0) return false;
    n -= static_cast<uint32_t>(got);
  }
  if (!KWS_MODEL_IS_STEP) {
    uint32_t start = kws_instructions();
    if (model->Invoke(input, probabilities) != kTfLiteOk) return false;
    invokes += kws_instructions() - start;
  }
  fwrite(probabilities, sizeof(float), KWS_N_LABELS, g_out);
  WriteU32(frontend);
  WriteU32(invokes);
  return true;
}

// The whole stream, as kws_example_main.cc runs it, one record per frame.
bool RunStream(uint32_t samples) {
  float audio[KWS_HOP_LENGTH];
  uint32_t frame = 0;
  size_t n;
  kws_frontend_reset(&g_frontend);
  kws_posterior_reset(&g_posterior);
  if (g_stream.Reset() != kTfLiteOk) return false;
  while (samples > 0 && (n = ReadSamples(audio, samples)) > 0) {
    samples -= n;
    const float* next = audio;
    float features[KWS_N_MFCC];
    uint32_t start = kws_instructions();
    while (kws_frontend_push(&g_frontend, &next, &n, features)) {
      int8_t input[KWS_N_MFCC];
      float probabilities[KWS_N_LABELS];
      bool ready;
      KwsEvent event;
      kws_quantize(features, KWS_N_MFCC, input);
      uint32_t model_start = kws_instructions();
      if (g_stream.Push(input, probabilities, &ready) != kTfLiteOk) return false;
      uint32_t posterior_start = kws_instructions();
      frame++;
      int fired = ready && kws_posterior_push(&g_posterior, probabilities, frame, &event);
      uint32_t end = kws_instructions();
      WriteU32(model_start - start);
      WriteU32(posterior_start - model_start);
      WriteU32(end - posterior_start);
      int32_t label = fired ? event.label : -1;
      float score = fired ? event.score : 0.0f;
      fwrite(&label, sizeof(label), 1, g_out);
      fwrite(&score, sizeof(score), 1, g_out);
      start = kws_instructions();
    }
  }
  return samples == 0;
}

}  // namespace

int main() {
  char magic[4];
  uint32_t mode, count;
  g_in = fopen("kws_in.bin", "rb");
  g_out = fopen("kws_out.bin", "wb");
  if (g_in == nullptr || g_out == nullptr || fread(magic, 1, 4, g_in) != 4 || memcmp(magic, "KWS1", 4) != 0 ||
      !ReadU32(&mode) || !ReadU32(&count)) {
    printf("kws board: no kws_in.bin, or not one\n");
    return 2;
  }
  uint8_t* arenas[KWS_MODEL_COPIES];
  for (int i = 0; i < KWS_MODEL_COPIES; i++) {
    arenas[i] = g_arenas[i];
  }
  if (g_stream.Init(arenas, &g_ops) != kTfLiteOk) {
    printf("kws board: the model does not load (arena too small, or an op missing?)\n");
    return 1;
  }
  {
    // The features of digital silence: one window of zeros through a fresh front-end.
    static const float zeros[KWS_WINDOW_LENGTH] = {0};
    const float* next = zeros;
    size_t n = KWS_WINDOW_LENGTH;
    kws_frontend_reset(&g_frontend);
    kws_frontend_push(&g_frontend, &next, &n, g_silence);
  }
  fwrite("KWS1", 1, 4, g_out);
  WriteU32(KWS_N_LABELS);
  WriteU32(static_cast<uint32_t>(g_stream.ArenaUsedBytes()));
  bool ok = true;
  if (mode == 0) {
    for (uint32_t i = 0; ok && i < count; i++) {
      uint32_t lead, n;
      ok = ReadU32(&lead) && ReadU32(&n) && RunClip(g_stream.Copy(0), lead, n);
    }
  } else {
    ok = mode == 1 && RunStream(count);
  }
  g_ops.Write(g_out);
  fclose(g_out);
  if (!ok) {
    printf("kws board: the input is cut short, or an invoke failed\n");
    return 1;
  }
  return 0;
}
