// --device on the command line: `kestrel train --device cuda` trains on the CUDA backend (the
// emulator here, a GPU in bench/gpu/run.sh) to the same losses as --device cpu, checkpoints and
// resumes there; auto never picks the emulator; a bad value is a clear error.
import { skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { selectDevice, takeDeviceFlag } from '../../src/cli/device.js';
import { runCli, tinyTrainDir } from '../helpers.js';

const setup = (): string => tinyTrainDir('kestrel-cli-device-');

const losses = (out: string): number[] => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);

test('kestrel train --device cuda matches --device cpu, and resumes on the GPU', { skip: skipUnless('cuda') || skipUnless('cpu') }, () => {
  const dir = setup();
  const run = (device: string, out: string, extra: string[] = []) => {
    const r = runCli(['train', '--device', device, '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--output', out,
      '--seq-len', '10', '--batch-size', '4', '--lr', '3e-3', '--seed', '1', '--save-every', '2', '--quiet', ...extra]);
    assert.equal(r.status, 0, r.stderr);
    return r;
  };
  // the same procedure on both devices: 2 steps, a checkpoint, then a resume to step 3
  for (const device of ['cpu', 'cuda']) {
    run(device, join(dir, device), ['--max-steps', '2']);
    const r = run(device, join(dir, device), ['--max-steps', '3', '--resume', 'latest']);
    assert.match(r.stdout, /trained to step 3/);
  }
  const [a, b] = [losses(join(dir, 'cpu')), losses(join(dir, 'cuda'))];
  assert.equal(b.length, 3);
  b.forEach((x, i) => assert.ok(Math.abs(x - a[i]) <= 1e-4 * Math.abs(a[i]), `step ${i + 1}: cuda loss ${x}, cpu ${a[i]}`));
});

test('--device is parsed from any position and checked', () => {
  assert.deepEqual(takeDeviceFlag(['--model', 'm', '--device', 'cpu', '--x']), { rest: ['--model', 'm', '--x'], device: 'cpu' });
  assert.deepEqual(takeDeviceFlag(['--device=cuda']), { rest: [], device: 'cuda' });
  assert.throws(() => takeDeviceFlag(['--device']), /--device needs a value/);
  assert.throws(() => selectDevice('tpu', () => {}), /--device must be one of auto, cuda, cpu, got 'tpu'/);
  const notices: string[] = [];
  // the tests run with the CUDA emulator on: auto must still choose the CPU
  assert.equal(selectDevice('auto', (l) => notices.push(l)), process.env.KESTREL_TEST_GPU === '1' ? 'cuda' : 'cpu');
  if (process.env.KESTREL_TEST_GPU !== '1') assert.deepEqual(notices, []);
});

test('kestrel generate --device bogus fails with the allowed values', () => {
  const r = runCli(['generate', '--device', 'bogus', '--model', 'nowhere']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--device must be one of auto, cuda, cpu, got 'bogus'/);
});
