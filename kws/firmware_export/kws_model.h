// TensorFlow Lite Micro glue for the exported model: one interpreter (KwsModel), and
// the streaming model side of kws.stream.Detector (KwsStreamModel).
#ifndef KWS_MODEL_H
#define KWS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kws_model_ops.h"
#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

// One TFLM interpreter over kws_model_data, with its own tensor arena.
class KwsModel {
 public:
  // `arena`: KWS_ARENA_BYTES bytes (16-byte aligned) for this interpreter alone: the
  // LSTM state lives in it, so two copies of the model need two arenas. `profiler`, if
  // given, is told when each op starts and ends.
  TfLiteStatus Init(uint8_t* arena, size_t arena_bytes, tflite::MicroProfilerInterface* profiler = nullptr);
  // One invoke on KWS_INPUT_SIZE quantised features; writes the KWS_N_LABELS
  // probabilities, dequantised as kws.runtime.dequantize does.
  TfLiteStatus Invoke(const int8_t* input, float* probabilities);
  // Zeroes the recurrent state: the fused LSTM keeps (h, c) between invokes, so a new
  // clip or stream on top of the old state gives silently wrong results.
  TfLiteStatus Reset();
  // Arena bytes the interpreter actually uses (to trim KWS_ARENA_BYTES on a target).
  size_t ArenaUsedBytes() const;

 private:
  KwsOpResolver resolver_;
  tflite::MicroInterpreter* interpreter_ = nullptr;
  // The interpreter is built in place by Init (no heap, and it has no default constructor).
  alignas(tflite::MicroInterpreter) unsigned char storage_[sizeof(tflite::MicroInterpreter)];
};

// kws.stream.Detector.posterior: quantised feature frames in, posteriors out.
// A step model (KWS_MODEL_IS_STEP) runs one invoke per frame in KWS_MODEL_COPIES
// copies: with KWS_RESET_EVERY > 0, copy i is reset every KWS_RESET_EVERY frames,
// KWS_RESET_EVERY / 2 frames after copy i-1, and the posterior comes from the copy with
// the longer history (bounded memory, no word cut by a reset). A whole-clip model runs
// on the last KWS_CLIP_FRAMES frames every KWS_HOP_FRAMES frames, reset before each run.
class KwsStreamModel {
 public:
  // `arenas`: KWS_MODEL_COPIES arenas of KWS_ARENA_BYTES bytes each.
  TfLiteStatus Init(uint8_t* const* arenas, tflite::MicroProfilerInterface* profiler = nullptr);
  // Starts a new stream.
  TfLiteStatus Reset();
  // Feeds one frame (KWS_N_MFCC quantised features). *ready says whether the model ran
  // on it, with its output in `probabilities`.
  TfLiteStatus Push(const int8_t* frame, float* probabilities, bool* ready);
  // Copy i (0 <= i < KWS_MODEL_COPIES), e.g. to classify single clips with copy 0.
  KwsModel* Copy(int i) { return &copies_[i]; }
  // The most arena bytes any copy uses.
  size_t ArenaUsedBytes() const;

 private:
  KwsModel copies_[KWS_MODEL_COPIES];
  uint32_t frames_ = 0;
#if !KWS_MODEL_IS_STEP
  int8_t window_[KWS_CLIP_FRAMES * KWS_N_MFCC];  // the last KWS_CLIP_FRAMES frames, oldest first
#endif
};

#endif  // KWS_MODEL_H
