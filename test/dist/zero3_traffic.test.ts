// Bytes communicated per step at ZeRO stage 3 against DDP (stage 0), measured by the process
// group's counters on 2 real ranks (the ZeRO paper's units: an all-reduce of n bytes moves 2n, an
// all-gather its output, a reduce-scatter its input). DDP all-reduces the float32 gradient: 2Ψ·4
// bytes. Stage 3 gathers every layer twice (forward, backward) and reduce-scatters its gradient
// once, 3Ψ_layers·4 (each arena padded to N), and stage 2 moves what stays whole (embeddings,
// head, final norm) once each way, 2Ψ_outside·4: the paper's 1.5× DDP when the layers dominate.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runRanks } from './ranks.js';

type Report = { rank: number; moved: Record<string, number>; psi: number; psiLayers: number; paddedLayers: number };

async function measure(stage: number): Promise<Report> {
  const runs = await runRanks(join(import.meta.dirname, 'zero3_traffic_rank.ts'), 2, () => ({ ZERO_STAGE: String(stage), KESTREL_NUM_THREADS: '1' }));
  for (const r of runs) assert.equal(r.code, 0, `stage ${stage} rank ${r.rank}: ${r.stderr}`);
  return JSON.parse(runs[0].stdout.trim()) as Report;
}

test('ZeRO-3 moves 3Ψ_layers + 2Ψ_outside per step where DDP moves 2Ψ (the paper\'s 1.5× when layers dominate)', async () => {
  const ddp = await measure(0);
  const z3 = await measure(3);
  const { psi, psiLayers, paddedLayers } = z3;
  const outside = psi - psiLayers;
  assert.equal(ddp.moved.allReduce, 2 * psi * 4, `DDP all-reduce bytes ${ddp.moved.allReduce} != 2Ψ·4 = ${2 * psi * 4}`);
  assert.equal(z3.moved.allGather, 2 * paddedLayers * 4 + outside * 4, 'stage 3 all-gather bytes: every layer twice, the outside once (after the update)');
  assert.equal(z3.moved.reduceScatter, paddedLayers * 4 + outside * 4, 'stage 3 reduce-scatter bytes: every gradient once');
  assert.ok(z3.moved.allReduce <= 64, `stage 3 all-reduces only scalars (the norm): ${z3.moved.allReduce} bytes`);
  const ratio = (z3.moved.allGather + z3.moved.reduceScatter + z3.moved.allReduce) / ddp.moved.allReduce;
  const paper = (3 * psiLayers + 2 * outside) / (2 * psi);
  assert.ok(Math.abs(ratio - paper) < 0.01, `measured ${ratio.toFixed(3)}× DDP vs (3Ψ_layers + 2Ψ_outside) / 2Ψ = ${paper.toFixed(3)}`);
  process.stdout.write(`# stage 3 / DDP bytes per step: ${ratio.toFixed(3)} (Ψ ${psi}, layers ${psiLayers}; all layers would give 1.5)\n`);
});
