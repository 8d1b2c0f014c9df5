// Quantized weight formats (QLoRA's 4-bit NF4 / FP4 so far).
export { NF4_CODE, FP4_CODE, quantize4bit, dequantize4bit, type FourBitTensor, type FourBitType } from './four_bit.js';
export { QuantLinear } from './quant_linear.js';
