// One rank of the expert-parallel test (test/dist/expert_parallel.test.ts runs 1, 2 and 4 of
// these): a tiny Mixtral-style model (4 experts, top-2), the same seeded weights everywhere; rank r
// trains on its share of a fixed global batch, its experts split over an expert-parallel group,
// the dense gradients all-reduced over the world by DistributedDataParallel. Prints the global
// loss per step and the weights it owns (every dense weight, its own experts) as JSON on stdout.
import * as k from '../../src/index.js';
import { initProcessGroup } from '../../src/dist/init.js';
import { DistributedDataParallel } from '../../src/dist/ddp.js';
import { setExpertParallel, type SparseMoe } from '../../src/models/moe.js';
import { decoderConfig } from '../../src/models/registry.js';

const STEPS = 3;
const ROWS = 4;
const T = 9;

const world = await initProcessGroup();
const P = world.size;
const config = decoderConfig({
  model_type: 'mixtral', vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, num_local_experts: 4, num_experts_per_tok: 2, initializer_range: 0.2,
}, 'expert-parallel test config');
const model = new k.CausalLM(config, { generator: new k.Generator(5), backend: 'cpu' });
const paramBytesBefore = k.memory.stats().current.param;
const ep = P > 1 ? await world.newGroup(world.ranks) : null;
if (ep) setExpertParallel(model, ep);
const paramBytes = k.memory.stats().current.param;

const allIds = Array.from({ length: ROWS }, (_, r) => Array.from({ length: T }, (_, t) => (r * 11 + t * 7 + ((r * t) % 5)) % 40));
const mine = allIds.slice((world.rank * ROWS) / P, ((world.rank + 1) * ROWS) / P);
const targets = ROWS * (T - 1); // the global batch's target tokens normalise every rank's summed loss

const isExpert = (name: string): boolean => name.includes('.experts.');
const params = model.namedParameters().filter(([, p]) => p.requiresGrad);
const opt = new k.optim.AdamW(params.map(([, p]) => p), { lr: 1e-2 });
const dense = params.filter(([n]) => !isExpert(n)).map(([, p]) => p);
const ddp = ep ? new DistributedDataParallel(world) : null;
const losses: number[] = [];
for (let step = 0; step < STEPS; step++) {
  for (const [, p] of params) p.zeroGrad();
  // the dense part is data parallel (DDP's bucketed all-reduce over the world while backward runs,
  // beside the expert exchanges on the expert-parallel group); each expert's gradient is whole on its owner
  ddp?.arm(dense);
  const local = k.tidy(() => {
    const ids = k.tensor(mine, { dtype: 'int64', backend: 'cpu' });
    const loss = model.forward({ inputIds: ids, labels: ids, lossReduction: 'sum', routerAuxLoss: false }).loss!.div(targets);
    loss.backward();
    return loss.item();
  });
  await ddp?.finish(dense);
  const total = k.tensor([local], { backend: 'cpu' });
  await world.allReduce(total);
  losses.push(total.item());
  opt.step();
}
const weights = Object.fromEntries(params.map(([n, p]) => [n, Array.from(p.toFloat32Array())]));
const blocks = model.model.layers.map((l) => l.sparseBlock() as SparseMoe);
const expertBytes = model.namedParameters().filter(([n, p]) => isExpert(n) && !k.isMeta(p)).reduce((a, [, p]) => a + p.numel * 4, 0);
process.stdout.write(JSON.stringify({ rank: world.rank, losses, weights, grouped: blocks.every((b) => b.groupable()), paramBytesBefore, paramBytes, expertBytes }) + '\n');
world.destroy();
