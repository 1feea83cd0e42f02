#include "kws_lstm.h"

// Compiled only against CMSIS-NN (kws_model_ops.h uses TFLM's own LSTM kernel otherwise).
#if defined(CMSIS_NN)

#include "Include/arm_nnfunctions.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/lstm_eval.h"
#include "tensorflow/lite/micro/kernels/lstm_shared.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace {

struct OpData {
  tflite::OpDataLSTM reference;   // TFLM's quantisation parameters, as its kernels use them
  cmsis_nn_lstm_params cmsis_nn;  // the same, in CMSIS-NN's form
};

// CMSIS-NN takes a gate's bias folded with the input offset (sum of weights x offset).
int32_t* FoldedBias(TfLiteContext* context, const int8_t* weights, int columns, int rows,
                    int32_t offset, const int32_t* bias) {
  auto* folded = static_cast<int32_t*>(context->AllocatePersistentBuffer(context, rows * sizeof(int32_t)));
  if (folded != nullptr) {
    arm_vector_sum_s8(folded, columns, rows, weights, offset, 0, bias);
  }
  return folded;
}

// One gate of CMSIS-NN's parameters from TFLM's.
TfLiteStatus PortGate(TfLiteContext* context, const tflite::LSTMKernelContents& tensors,
                      const tflite::OpDataLSTM& reference, const tflite::GateParameters& gate,
                      int input_weights, int recurrent_weights, int bias,
                      arm_nn_activation_type activation, cmsis_nn_lstm_gate* out) {
  const int inputs = reference.size_info.input_dimension;
  const int units = reference.size_info.state_dimension;
  const int8_t* w_input = tflite::micro::GetTensorData<int8_t>(tensors.GetInternalTensor(input_weights));
  const int8_t* w_recurrent = tflite::micro::GetTensorData<int8_t>(tensors.GetInternalTensor(recurrent_weights));
  const int32_t* b = tflite::micro::GetTensorData<int32_t>(tensors.GetInternalTensor(bias));
  // The hidden state is quantised like the output: its offset is minus the output's.
  const int32_t hidden_offset = -reference.inter_gate_parameters.output_mul_params.output_offset;
  out->input_multiplier = gate.input_fc_params.output_multiplier;
  out->input_shift = gate.input_fc_params.output_shift;
  out->input_weights = w_input;
  out->input_effective_bias = FoldedBias(context, w_input, inputs, units, gate.input_fc_params.input_offset, b);
  out->hidden_multiplier = gate.recurrent_fc_params.output_multiplier;
  out->hidden_shift = gate.recurrent_fc_params.output_shift;
  out->hidden_weights = w_recurrent;
  out->hidden_effective_bias = FoldedBias(context, w_recurrent, units, units, hidden_offset, nullptr);
  out->bias = b;
  out->activation_type = activation;
  return out->input_effective_bias != nullptr && out->hidden_effective_bias != nullptr ? kTfLiteOk : kTfLiteError;
}

void* Init(TfLiteContext* context, const char*, size_t) {
  return context->AllocatePersistentBuffer(context, sizeof(OpData));
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE_EQ(context, node->inputs->size, 24);
  TF_LITE_ENSURE_EQ(context, node->outputs->size, 1);
  auto* data = static_cast<OpData*>(node->user_data);
  tflite::OpDataLSTM& reference = data->reference;
  const auto* options = static_cast<const TfLiteUnidirectionalSequenceLSTMParams*>(node->builtin_data);
  {
    tflite::LstmTensors lstm(context, node);  // temporary tensors, freed at the end of this scope
    TF_LITE_ENSURE_OK(context, lstm.ValidateTensorStatus(context));
    const TfLiteTensor* input = lstm.GetInternalTensor(tflite::kLstmInputTensor);
    if (input->type != kTfLiteInt8 || lstm.GetInternalTensor(tflite::kLstmInputToForgetWeightsTensor)->type != kTfLiteInt8 ||
        lstm.CellStateTensor()->type != kTfLiteInt16 ||
        lstm.GetInternalTensor(tflite::kLstmInputToInputWeightsTensor) == nullptr) {
      MicroPrintf("kws stateful LSTM: only int8 input and weights, int16 cell state, with an input gate");
      return kTfLiteError;
    }
    reference.cell_gate_nonlinear_type = options->activation;
    reference.size_info = tflite::CreateLstmSizeInfo(options->time_major, input->dims, lstm.HiddenStateTensor()->dims);
    TF_LITE_ENSURE_OK(context, tflite::ValidateTensorSize(context, lstm, reference.size_info));
    reference.cell_state_info = tflite::CreateLstmCellStateInfo(lstm.CellStateTensor()->params.scale, options->cell_clip);
    TF_LITE_ENSURE_OK(context, tflite::PrepareGateParametersInteger(context, lstm, &reference));
  }
  const tflite::LSTMKernelContents tensors = tflite::CreateLSTMKernelContent(context, node);
  cmsis_nn_lstm_params& p = data->cmsis_nn;
  p.time_major = reference.size_info.time_major;
  p.batch_size = reference.size_info.batch_size;
  p.time_steps = reference.size_info.time_steps;
  p.input_size = reference.size_info.input_dimension;
  p.hidden_size = reference.size_info.state_dimension;
  p.input_offset = reference.forget_gate_parameters.input_fc_params.input_offset;
  p.forget_to_cell_multiplier = reference.inter_gate_parameters.forget_cell_mul_params.output_multiplier;
  p.forget_to_cell_shift = reference.inter_gate_parameters.forget_cell_mul_params.output_shift;
  p.input_to_cell_multiplier = reference.inter_gate_parameters.input_mul_params.output_multiplier;
  p.input_to_cell_shift = reference.inter_gate_parameters.input_mul_params.output_shift;
  p.cell_clip = reference.cell_state_info.quantized_cell_clip;
  p.cell_scale_power = reference.cell_state_info.cell_state_scale_power;
  p.output_multiplier = reference.inter_gate_parameters.output_mul_params.output_multiplier;
  p.output_shift = reference.inter_gate_parameters.output_mul_params.output_shift;
  p.output_offset = reference.inter_gate_parameters.output_mul_params.output_offset;
  const arm_nn_activation_type cell_activation =
      reference.cell_gate_nonlinear_type == kTfLiteActTanh ? ARM_TANH : ARM_SIGMOID;
  // Each gate: TFLM's parameters, its input and recurrent weights and bias, activation, CMSIS-NN's.
  const struct {
    const tflite::GateParameters& params;
    int input_weights, recurrent_weights, bias;
    arm_nn_activation_type activation;
    cmsis_nn_lstm_gate* out;
  } gates[] = {
      {reference.forget_gate_parameters, tflite::kLstmInputToForgetWeightsTensor,
       tflite::kLstmRecurrentToForgetWeightsTensor, tflite::kLstmForgetGateBiasTensor, ARM_SIGMOID, &p.forget_gate},
      {reference.input_gate_parameters, tflite::kLstmInputToInputWeightsTensor,
       tflite::kLstmRecurrentToInputWeightsTensor, tflite::kLstmInputGateBiasTensor, ARM_SIGMOID, &p.input_gate},
      {reference.cell_gate_parameters, tflite::kLstmInputToCellWeightsTensor, tflite::kLstmRecurrentToCellWeightsTensor,
       tflite::kLstmCellGateBiasTensor, cell_activation, &p.cell_gate},
      {reference.output_gate_parameters, tflite::kLstmInputToOutputWeightsTensor,
       tflite::kLstmRecurrentToOutputWeightsTensor, tflite::kLstmOutputGateBiasTensor, ARM_SIGMOID, &p.output_gate},
  };
  for (const auto& gate : gates) {
    TF_LITE_ENSURE_OK(context, PortGate(context, tensors, reference, gate.params, gate.input_weights,
                                        gate.recurrent_weights, gate.bias, gate.activation, gate.out));
  }
  // Two int16 gate buffers; the cell state is the model's own state tensor, not scratch.
  const size_t bytes = p.batch_size * p.hidden_size * sizeof(int16_t);
  TF_LITE_ENSURE_OK(context, context->RequestScratchBufferInArena(context, bytes, &reference.buffer_indices[0]));
  TF_LITE_ENSURE_OK(context, context->RequestScratchBufferInArena(context, bytes, &reference.buffer_indices[1]));
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const auto* data = static_cast<const OpData*>(node->user_data);
  tflite::LSTMKernelContents tensors = tflite::CreateLSTMKernelContent(context, node);
  cmsis_nn_lstm_context buffers;
  buffers.temp1 = context->GetScratchBuffer(context, data->reference.buffer_indices[0]);
  buffers.temp2 = context->GetScratchBuffer(context, data->reference.buffer_indices[1]);
  // Non-null state pointers: CMSIS-NN starts from them and leaves the last step's h and c there.
  buffers.hidden_state = tflite::micro::GetTensorData<int8_t>(tensors.HiddenStateTensor());
  buffers.cell_state = tflite::micro::GetTensorData<int16_t>(tensors.CellStateTensor());
  const int8_t* input = tflite::micro::GetTensorData<int8_t>(tensors.GetInternalTensor(tflite::kLstmInputTensor));
  int8_t* output = tflite::micro::GetTensorData<int8_t>(tensors.output_tensor);
  return arm_lstm_unidirectional_s8(input, output, &data->cmsis_nn, &buffers) == ARM_CMSIS_NN_SUCCESS ? kTfLiteOk
                                                                                                     : kTfLiteError;
}

}  // namespace

TFLMRegistration kws_register_stateful_lstm() { return tflite::micro::RegisterOp(Init, Prepare, Eval); }

#endif  // CMSIS_NN
