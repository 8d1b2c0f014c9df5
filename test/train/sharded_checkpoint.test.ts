// The universal part of sharded checkpoints, without processes: shards written in one layout (3
// ranks of ZeRO-2 buckets) are reassembled into another (2 ranks of ZeRO-1's contiguous shards, and
// whole parameters): every element must come back at its place, its value known by construction
// (master = parameter index + element / 1000, each state a fixed multiple of it). A manifest whose
// shards miss part of a parameter is an error naming what is missing.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { piecesIn, planBuckets } from '../../src/dist/bucket_plan.js';
import { saveSafetensors } from '../../src/io/safetensors.js';
import { type ShardTarget, type ZeroManifest, manifestShards, readManifest, reassemble } from '../../src/train/sharded_checkpoint.js';
import { writeJsonAtomic } from '../../src/io/hf_folder.js';

const sizes = [7, 33, 1, 5, 16];
const names = sizes.map((_, i) => `layer.${i}.weight`);
const params = sizes.map((n) => k.zeros([n], { backend: 'cpu' }));
const value = (p: number, e: number): number => p + e / 1000;
const STATES = { exp_avg: 2, exp_avg_sq: 3 };

/** A checkpoint folder as 3 ZeRO-2 ranks (buckets of ≤ 20 elements) write it. */
function writeSharded(dropLast = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-shards-'));
  mkdirSync(dir, { recursive: true });
  const N = 3;
  const plan = planBuckets(params, N, 20);
  const ranks: ZeroManifest['ranks'] = [];
  for (let r = 0; r < N; r++) {
    const pieces = plan.buckets.flatMap((b) => piecesIn(b.params, r * (b.length / N), b.length / N, b.shardOffset))
      .filter((p) => !(dropLast && r === 2 && p.param === params[1]));
    const master = new Float32Array(plan.shardLength);
    for (const p of pieces) for (let e = 0; e < p.length; e++) master[p.at + e] = value(params.indexOf(p.param), p.start + e);
    const shard = (f: number) => k.tensor(master.map((v) => v * f), { shape: [master.length], backend: 'cpu' });
    const tensors = { '0.master': shard(1), ...Object.fromEntries(Object.entries(STATES).map(([n, f]) => [`0.${n}`, shard(f)])) };
    const file = `optimizer-rank${r}.safetensors`;
    saveSafetensors(join(dir, file), tensors);
    Object.values(tensors).forEach((t) => t.dispose());
    ranks.push({ file, rng: { seed: 1, counter: 0 }, groups: [{ length: master.length, keys: Object.keys(STATES), pieces: pieces.map((p) => ({ name: names[params.indexOf(p.param)], start: p.start, length: p.length, at: p.at })) }] });
  }
  const tensors = Object.fromEntries(names.map((n, i) => [n, { shape: [sizes[i]], dtype: 'float32' }]));
  writeJsonAtomic(join(dir, 'zero_manifest.json'), { format: 'kestrel-zero', world_size: N, stage: 2, tensors, ranks });
  return dir;
}

function check(dir: string, targets: ShardTarget[]): void {
  const got = reassemble(manifestShards(dir, readManifest(dir)), targets, dir);
  targets.forEach((t, ti) => {
    for (const p of t.pieces) {
      const i = names.indexOf(p.name);
      for (let e = 0; e < p.length; e++) {
        const want = value(i, p.start + e);
        assert.equal(got[ti].master[p.at + e], Math.fround(want), `${p.name}[${p.start + e}] master`);
        for (const [n, f] of Object.entries(STATES)) assert.equal(got[ti].state[n][p.at + e], Math.fround(Math.fround(want) * f), `${p.name}[${p.start + e}] ${n}`);
      }
    }
  });
}

test('3 ranks of ZeRO-2 buckets reassemble into 2 ranks of ZeRO-1 shards and into whole parameters', () => {
  const dir = writeSharded();
  const total = sizes.reduce((a, b) => a + b, 0);
  const shardLen = Math.ceil(total / 2);
  for (let r = 0; r < 2; r++) {
    const pieces = piecesIn(params, r * shardLen, shardLen, 0).map((p) => ({ name: names[params.indexOf(p.param)], start: p.start, length: p.length, at: p.at }));
    check(dir, [{ length: shardLen, pieces }]);
  }
  check(dir, names.map((name, i) => ({ length: sizes[i], pieces: [{ name, start: 0, length: sizes[i], at: 0 }] })));
});

test('shards that miss part of a parameter, or a manifest listing the wrong number of ranks, are errors', () => {
  const dir = writeSharded(true);
  assert.throws(() => check(dir, names.map((name, i) => ({ length: sizes[i], pieces: [{ name, start: 0, length: sizes[i], at: 0 }] }))), /the saved shards hold \d+ of the 62 elements this run needs/);
  assert.throws(() => reassemble(manifestShards(dir, readManifest(dir)), [{ length: 3, pieces: [{ name: 'nope', start: 0, length: 3, at: 0 }] }], dir), /hold 0 of the 3 elements this run needs \(parameters asked for: nope\)/);
  const other = writeSharded();
  writeJsonAtomic(join(other, 'zero_manifest.json'), { format: 'kestrel-zero', world_size: 4, stage: 2, tensors: {}, ranks: [] });
  assert.throws(() => readManifest(other), /'ranks' must list 4 ranks, got 0/);
});
