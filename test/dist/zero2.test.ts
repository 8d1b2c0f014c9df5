// ZeRO stage 2 through the real CLI: N ranks with gradients reduce-scattered into their owners'
// shards equal 1 rank × grad-accum N within float32 reduction-order tolerance (the global norm is
// a sum of the ranks' shard norms instead of one sum over parameters, so the clipping factor moves
// by ~1e-7). Small reduce buckets (ds_config reduce_bucket_size, in elements) make several
// reduceScatters per backward, some parameters larger than a bucket. Accumulation, clipping, bf16
// autocast and fp16 loss scaling ride along: an overflow skip decided differently on two ranks
// would leave different weights and a different loss-scale sequence from 1 rank's. On one machine
// the parameters live in the ranks' shared shards and nothing is gathered after the update; with
// shared memory off (KESTREL_DIST_SHARE=0) they are rebuilt by all-gathers, as across machines.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tinyTrainDir, withEnv } from '../helpers.js';
import { kestrelSegments, segmentsLeft } from './ranks.js';
import { sameRun, train } from './train_runs.js';

for (const [accum, dtype, share] of [[2, 'fp32', true], [1, 'fp16', true], [2, 'fp32', false]] as const) {
  test(`ZeRO-2: 2 ranks × grad-accum ${accum} (${dtype}, 300-element buckets${share ? '' : ', shared memory off'}) equal 1 rank × grad-accum ${2 * accum}`, () => {
    const before = kestrelSegments();
    const dir = tinyTrainDir('kestrel-zero2-');
    // fp16 from 2^20: the first steps overflow and are skipped, then the scale settles
    const fp16 = { enabled: dtype === 'fp16', initial_scale_power: 20, loss_scale_window: 2 };
    writeFileSync(join(dir, 'ds.json'), JSON.stringify({ fp16, zero_optimization: { stage: 2, reduce_bucket_size: 300, overlap_comm: true, contiguous_gradients: true } }));
    const steps = dtype === 'fp16' ? ['--max-steps', '6'] : [];
    const one = train(dir, 'one', ['--grad-accum', String(2 * accum), '--dtype', dtype, '--deepspeed', join(dir, 'ds.json'), ...steps]);
    const many = withEnv('KESTREL_DIST_SHARE', share ? '1' : '0', () => train(dir, 'zero2', ['--nproc', '2', '--grad-accum', String(accum), '--dtype', dtype, '--deepspeed', join(dir, 'ds.json'), ...steps]));
    // the parameters each rank counts: half of them in place (they lie in the shared shards), all of them when rebuilt
    const half = one.peaks[0].param / 2;
    assert.ok(share ? many.peaks[0].param < half * 1.2 : many.peaks[0].param >= one.peaks[0].param, `rank 0 parameter memory ${many.peaks[0].param} bytes vs 1 rank's ${one.peaks[0].param}`);
    assert.ok(one.norms.some((n) => n > 1.2), 'clipping was exercised');
    if (dtype === 'fp16') assert.ok(one.scales.some((s, i) => i > 0 && s! < one.scales[i - 1]!), `no overflow skip happened: scales ${one.scales.join(', ')}`);
    sameRun(dir, one, many, 'one', 'zero2');
    assert.deepEqual(segmentsLeft(before), []);
  });
}
