// LoRA: the fused op, the wrapper layer, named adapters, modules_to_save, injection by module name,
// PEFT adapters, merging.
export { LoraLinear, Matrix, type LoraBase, type LoraOptions } from './lora_linear.js';
export { loraLinear, loraLinearGroup, loraComposite, type LoraProjection, type LoraCallOptions } from './fused_lora.js';
export { sharedInputProjections } from './shared_input.js';
export { ModulesToSaveWrapper } from './modules_to_save.js';
export { ModuleDict } from './module_dict.js';
export { castFrozenLinears } from './frozen_dtype.js';
export {
  injectLora, loraLayers, loadAdapter, saveAdapter, mergeLora, readAdapterConfig, setAdapter, activeAdapter, deleteAdapter, adapterNames, adapterTensors,
  type LoraConfig, type LoadAdapterOptions,
} from './peft.js';
