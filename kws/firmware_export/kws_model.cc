#include "kws_model.h"

#include <string.h>

#include <new>

TfLiteStatus KwsModel::Init(uint8_t* arena, size_t arena_bytes, tflite::MicroProfilerInterface* profiler) {
  TF_LITE_ENSURE_STATUS(kws_register_ops(resolver_));
  const tflite::Model* model = tflite::GetModel(kws_model_data);
  interpreter_ = new (storage_) tflite::MicroInterpreter(model, resolver_, arena, arena_bytes, nullptr, profiler);
  TF_LITE_ENSURE_STATUS(interpreter_->AllocateTensors());
  TfLiteTensor* input = interpreter_->input(0);
  TfLiteTensor* output = interpreter_->output(0);
  // The front-end quantises with the constants generated from this same model.
  if (input->type != kTfLiteInt8 || input->bytes != KWS_INPUT_SIZE || output->type != kTfLiteInt8 ||
      output->bytes != KWS_N_LABELS) {
    return kTfLiteError;
  }
  return kTfLiteOk;
}

TfLiteStatus KwsModel::Invoke(const int8_t* input, float* probabilities) {
  memcpy(interpreter_->input(0)->data.int8, input, KWS_INPUT_SIZE);
  TF_LITE_ENSURE_STATUS(interpreter_->Invoke());
  const int8_t* out = interpreter_->output(0)->data.int8;
  for (int i = 0; i < KWS_N_LABELS; i++) {
    // In double, then rounded to float: the same value as Python's dequantize.
    probabilities[i] =
        static_cast<float>(static_cast<double>(KWS_OUTPUT_SCALE) * (out[i] - KWS_OUTPUT_ZERO_POINT));
  }
  return kTfLiteOk;
}

TfLiteStatus KwsModel::Reset() { return interpreter_->Reset(); }

size_t KwsModel::ArenaUsedBytes() const { return interpreter_->arena_used_bytes(); }

TfLiteStatus KwsStreamModel::Init(uint8_t* const* arenas, tflite::MicroProfilerInterface* profiler) {
  for (int i = 0; i < KWS_MODEL_COPIES; i++) {
    TF_LITE_ENSURE_STATUS(copies_[i].Init(arenas[i], KWS_ARENA_BYTES, profiler));
  }
  return Reset();
}

size_t KwsStreamModel::ArenaUsedBytes() const {
  size_t most = 0;
  for (int i = 0; i < KWS_MODEL_COPIES; i++) {
    most = copies_[i].ArenaUsedBytes() > most ? copies_[i].ArenaUsedBytes() : most;
  }
  return most;
}

TfLiteStatus KwsStreamModel::Reset() {
  frames_ = 0;
  for (int i = 0; i < KWS_MODEL_COPIES; i++) {
    TF_LITE_ENSURE_STATUS(copies_[i].Reset());
  }
  return kTfLiteOk;
}

#if KWS_MODEL_IS_STEP
TfLiteStatus KwsStreamModel::Push(const int8_t* frame, float* probabilities, bool* ready) {
  float outputs[KWS_MODEL_COPIES][KWS_N_LABELS];
  int oldest = 0;
  frames_++;
#if KWS_RESET_EVERY > 0
  uint32_t oldest_age = 0;
  for (int i = 0; i < KWS_MODEL_COPIES; i++) {
    // Frames since copy i's last reset: it restarts at frames 1 + i * R/2, 1 + R + i * R/2...
    const uint32_t offset = static_cast<uint32_t>(i) * (KWS_RESET_EVERY / 2);
    const uint32_t age = (frames_ - 1 + KWS_RESET_EVERY - offset) % KWS_RESET_EVERY;
    if (age == 0) {
      TF_LITE_ENSURE_STATUS(copies_[i].Reset());
    }
    if (age > oldest_age) {
      oldest_age = age;
      oldest = i;
    }
  }
#endif
  for (int i = 0; i < KWS_MODEL_COPIES; i++) {
    TF_LITE_ENSURE_STATUS(copies_[i].Invoke(frame, outputs[i]));
  }
  memcpy(probabilities, outputs[oldest], sizeof(outputs[oldest]));
  *ready = true;
  return kTfLiteOk;
}
#else
TfLiteStatus KwsStreamModel::Push(const int8_t* frame, float* probabilities, bool* ready) {
  const size_t last = (KWS_CLIP_FRAMES - 1) * KWS_N_MFCC;
  memmove(window_, window_ + KWS_N_MFCC, last);
  memcpy(window_ + last, frame, KWS_N_MFCC);
  frames_++;
  *ready = frames_ >= KWS_CLIP_FRAMES && (frames_ - KWS_CLIP_FRAMES) % KWS_HOP_FRAMES == 0;
  if (!*ready) {
    return kTfLiteOk;
  }
  TF_LITE_ENSURE_STATUS(copies_[0].Reset());
  return copies_[0].Invoke(window_, probabilities);
}
#endif
