// nn: modules, parameters and layers.
export { Module, Parameter, isParameter, type LoadResult } from './module.js';
export { Linear, Embedding, RMSNorm, LayerNorm, type FrozenLinear } from './layers.js';
export * as init from './init.js';
