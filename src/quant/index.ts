// Quantized weights: NF4 / FP4 (QLoRA) with double quantization, LLM.int8's row-scaled int8,
// QuantLinear (the quantized matmul with dequantization inside the kernel), quantizeModel.
export { NF4_CODE, FP4_CODE, quantize4bit, dequantize4bit, blockAbsmax, type FourBitTensor, type FourBitType, type FourBitOptions } from './four_bit.js';
export { DYNAMIC_MAP, NESTED_BLOCK_SIZE, quantizeStats, dequantizeStats, type QuantizedStats } from './double_quant.js';
export { quantizeInt8, dequantizeInt8, type Int8Tensor } from './int8.js';
export { QuantLinear, QUANT_TYPES, type QuantType, type QuantOptions, type QuantLinearState } from './quant_linear.js';
export { quantizeModel, INFERENCE_QUANTS, checkInferenceQuant, type InferenceQuant, type QuantizeModelOptions } from './quantize_model.js';
export { Q4_CODE, quantizeQ4, dequantizeQ4, type Q4Tensor } from './q4.js';
export { ACTIVATION_BLOCK, int8ActivationErrorBound } from './int8_activations.js';
