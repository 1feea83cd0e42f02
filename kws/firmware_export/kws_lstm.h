// An int8 UNIDIRECTIONAL_SEQUENCE_LSTM for TFLM that runs CMSIS-NN's LSTM step and keeps
// the recurrent state (h, c) in the model's state tensors between invokes.
//
// TFLM's own CMSIS-NN registration (tflite-micro of 2026-08) starts every invoke from a
// zero state, which turns a one-time-step model into one that forgets each frame as soon
// as it has seen it; TFLM's reference kernel keeps the state but costs about 7x the
// instructions. This one keeps the state like the reference kernel and computes each step
// with CMSIS-NN's arithmetic (arm_lstm_unidirectional_s8). MicroInterpreter::Reset()
// zeroes the state, as it does for the reference kernel.
#ifndef KWS_LSTM_H
#define KWS_LSTM_H

#include "tensorflow/lite/micro/micro_common.h"

// Pass to MicroMutableOpResolver::AddUnidirectionalSequenceLSTM. Needs CMSIS-NN's headers
// and library (TFLM built with OPTIMIZED_KERNEL_DIR=cmsis_nn, which defines CMSIS_NN).
TFLMRegistration kws_register_stateful_lstm();

#endif  // KWS_LSTM_H
