// LoRA: the wrapper layer, injection by module name, PEFT adapters, merging.
export { LoraLinear, type LoraOptions } from './lora_linear.js';
export { injectLora, loraLayers, loadAdapter, saveAdapter, mergeLora, readAdapterConfig, type LoraConfig } from './peft.js';
