// Bytes communicated per step at ZeRO stage 3 against DDP (stage 0), measured by the process
// group's counters on 2 real ranks (the ZeRO paper's units: an all-reduce of n bytes moves 2n, an
// all-gather its output, a reduce-scatter its input). DDP all-reduces the float32 gradient: 2Ψ·4
// bytes. Stage 3 gathers every unit (embeddings, layers, final norm, head) twice (forward,
// backward) and reduce-scatters its gradient once: 3Ψ·4 (each arena padded to N), the paper's
// 1.5× DDP, less one gather of the head (V·D): the forward's last unit stays gathered into its
// backward, which comes right after it. A tied embedding is gathered around each of its two uses
// (the lookup and the head) but reduce-scattered once, after the second use's backward: V·D more.
// With full activation checkpointing the bytes are the same: a layer's recomputation, recorded
// inside backward, keeps its gathered bytes for the backward that follows (and prefetches the layer
// before it, not after), so a layer is still gathered twice. These run with shared memory off (the
// all-gather path, as across machines); on one machine with it on, a layer is read in place from
// the peers' shards and nothing is gathered.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runRanks } from './ranks.js';

type Report = { rank: number; moved: Record<string, number>; psi: number; padded: number; embed: number; activationPeak: number };

/** One step's bytes per collective on 2 ranks; `share` off: the all-gather path (what runs across machines) */
async function measure(stage: number, tied: boolean, o: { checkpointing?: string; share?: boolean } = {}): Promise<Report> {
  const env = { ZERO_STAGE: String(stage), TIED: tied ? '1' : '0', CHECKPOINTING: o.checkpointing ?? 'none', KESTREL_NUM_THREADS: '1', KESTREL_DIST_SHARE: o.share ? '1' : '0' };
  const runs = await runRanks(join(import.meta.dirname, 'zero3_traffic_rank.ts'), 2, () => env);
  for (const r of runs) assert.equal(r.code, 0, `stage ${stage} rank ${r.rank}: ${r.stderr}`);
  return JSON.parse(runs[0].stdout.trim()) as Report;
}

test('ZeRO-3 moves 3Ψ less the head\'s second gather per step where DDP moves 2Ψ (the paper\'s 1.5×); a tied embedding is gathered per use and reduced once', async () => {
  for (const tied of [false, true]) {
    const z3 = await measure(3, tied);
    const { psi, padded, embed } = z3;
    // DDP all-reduces 2Ψ·4 bytes whatever the model: measured once, on the untied one
    const ddp = tied ? { moved: { allReduce: 2 * psi * 4 } } : await measure(0, tied);
    const twice = tied ? embed : 0; // the tied unit's second use: gathered again in forward and in backward
    const head = embed; // lm_head or the tied embedding: V·D (a multiple of 2)
    assert.equal(ddp.moved.allReduce, 2 * psi * 4, `DDP all-reduce bytes ${ddp.moved.allReduce} != 2Ψ·4 = ${2 * psi * 4}`);
    assert.equal(z3.moved.allGather, (2 * (padded + twice) - head) * 4, `${tied ? 'tied' : 'untied'}: all-gather bytes: every unit twice per use, the head once`);
    assert.equal(z3.moved.reduceScatter, padded * 4, `${tied ? 'tied' : 'untied'}: reduce-scatter bytes: every gradient once (a tied embedding's after both uses)`);
    assert.ok(z3.moved.allReduce <= 64, `stage 3 all-reduces only scalars (the norm): ${z3.moved.allReduce} bytes`);
    const ratio = (z3.moved.allGather + z3.moved.reduceScatter + z3.moved.allReduce) / ddp.moved.allReduce;
    const paper = (3 * psi + 2 * twice - head) / (2 * psi);
    assert.ok(Math.abs(ratio - paper) < 0.01, `measured ${ratio.toFixed(3)}× DDP vs (3Ψ${tied ? ' + VD' : ' - VD'}) / 2Ψ = ${paper.toFixed(3)}`);
    process.stdout.write(`# ${tied ? 'tied' : 'untied'}: stage 3 / DDP bytes per step: ${ratio.toFixed(3)} (Ψ ${psi})\n`);
  }
});

test('ZeRO-3 with full activation checkpointing moves the same bytes: the recomputed layer is not gathered a third time', async () => {
  const plain = await measure(3, false);
  const full = await measure(3, false, { checkpointing: 'full' });
  assert.deepEqual(full.moved, plain.moved, 'bytes per collective, full checkpointing vs none');
  // and the layers did recompute: what the tape keeps between forward and backward is smaller
  assert.ok(full.activationPeak < plain.activationPeak, `activation peak with full checkpointing ${full.activationPeak} B, without ${plain.activationPeak} B`);
});

test('ZeRO-3 on one machine reads the peers\' shards in place: no all-gather at all, every gradient reduce-scattered once', async () => {
  const z3 = await measure(3, true, { share: true });
  assert.equal(z3.moved.allGather ?? 0, 0, 'all-gather bytes');
  assert.equal(z3.moved.reduceScatter, z3.padded * 4, 'reduce-scatter bytes: every (padded) gradient once');
  // 10 arenas (the embeddings, the final norm, two per layer: matrices and norms), each padded to 2 shards of whole 64-byte lines
  assert.ok(z3.padded - z3.psi < 10 * 2 * 16, `padding: ${z3.padded} elements for Ψ ${z3.psi}`);
});
