// One rank of the ZeRO-3 traffic test (test/dist/zero3_traffic.test.ts): a tiny 4-layer llama, the
// same weights everywhere (tied embeddings with TIED=1; CHECKPOINTING=full recomputes the layers), one warm-up step and one measured step at stage 0 (DDP) or stage 3 on a
// fixed share of a global batch. Prints the bytes each collective moved during the measured step
// (ProcessGroup.traffic, the ZeRO paper's units), its activation memory peak, and the sizes they are checked against.
import * as k from '../../src/index.js';
import { DistributedDataParallel } from '../../src/dist/ddp.js';
import { initProcessGroup } from '../../src/dist/init.js';
import { ZeroStage3 } from '../../src/dist/zero3.js';
import { decoderConfig } from '../../src/models/registry.js';
import { decayParamGroups } from '../../src/train/param_groups.js';

const stage = Number(process.env.ZERO_STAGE);
const world = await initProcessGroup();
const config = decoderConfig({
  model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 4, num_attention_heads: 2, num_key_value_heads: 1,
  tie_word_embeddings: process.env.TIED === '1',
}, 'traffic test config');
const model = new k.CausalLM(config, { generator: new k.Generator(3), backend: 'cpu' });
model.checkpointing = process.env.CHECKPOINTING === 'full' ? 'full' : 'none';
const named = model.namedParameters();
const psi = named.reduce((a, [, p]) => a + p.numel, 0);
const ddp = new DistributedDataParallel(world);
await ddp.broadcastFromRank0(model.parameters());
const groups = decayParamGroups(model, 0.01);
const dp = stage === 3 ? new ZeroStage3(world, model, groups) : ddp;
const opt = new k.optim.AdamW(dp instanceof ZeroStage3 ? dp.shardGroups : groups, { lr: 1e-2 });
const ids = Array.from({ length: 2 }, (_, r) => Array.from({ length: 8 }, (_, t) => (world.rank * 5 + r * 3 + t) % 32));
let before: Record<string, number> = {};
for (let step = 0; step < 2; step++) {
  if (step === 1) (before = { ...world.traffic }), k.memory.resetPeak();
  const params = model.parameters().filter((p) => p.requiresGrad);
  dp.arm(params);
  k.tidy(() => {
    const t = k.tensor(ids, { dtype: 'int64', backend: 'cpu' });
    model.forward({ inputIds: t, labels: t, returnLogits: false }).loss!.backward(); // the trainer's call: ZeRO-3's head unit returns the loss alone
  });
  await dp.finish(params);
  await dp.gradNorm(params);
  dp.beforeOptimizerStep();
  opt.step();
  await dp.afterOptimizerStep();
  opt.zeroGrad();
  for (const p of params) p.zeroGrad();
}
const moved = Object.fromEntries(Object.entries(world.traffic).map(([op, n]) => [op, n - (before[op] ?? 0)]));
const padded = dp instanceof ZeroStage3 ? dp.shardNumel * world.size : psi;
const embed = config.vocabSize * config.hiddenSize;
const activationPeak = k.memory.stats().peak.activation; // of the measured step: lower when the layers recompute
process.stdout.write(JSON.stringify({ rank: world.rank, moved, psi, padded, embed, activationPeak }) + '\n');
world.destroy();
