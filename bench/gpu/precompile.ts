// Compiles CUDA kernel modules into the disk cache ahead of the tests (bench/gpu/run.sh starts one
// process per module, so NVRTC runs on every core at once). Usage: precompile.ts [module ...]
import { kernelModules, precompile } from '../../src/backend/cuda/modules.js';

for (const m of process.argv.length > 2 ? process.argv.slice(2) : kernelModules())
  console.log(`${m}: ${precompile(m).toFixed(0)} ms`);
