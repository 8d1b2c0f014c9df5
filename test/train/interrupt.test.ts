// Stopping and resuming a run the way users do it: Ctrl-C on a real `kestrel train` process saves
// a checkpoint and exits 130 within a step, a second Ctrl-C exits at once, and a resume continues
// the uninterrupted loss curve with each step logged once; the temporaries of a killed save are
// removed on the next start.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, startCli, tinyTrainDir, waitFor } from '../helpers.js';

const setup = (): string => tinyTrainDir('kestrel-interrupt-');

// a constant schedule: the learning rate of a step does not depend on --max-steps, so runs of
// different lengths share their first steps exactly
const trainArgs = (dir: string, out: string): string[] => ['train', '--device', 'cpu', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'),
  '--output', out, '--seq-len', '10', '--batch-size', '4', '--lr', '3e-3', '--schedule', 'constant', '--seed', '1', '--quiet'];

const steps = (out: string): { step: number; loss: number }[] =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });

test('Ctrl-C saves a checkpoint and exits 130; --resume continues the uninterrupted loss curve', async () => {
  const dir = setup();
  const out = join(dir, 'out');
  const run = startCli([...trainArgs(dir, out), '--max-steps', '100000']);
  await waitFor(() => existsSync(join(out, 'metrics.jsonl')) && steps(out).length >= 3, '3 logged steps');
  run.child.kill('SIGINT');
  const r = await run.exited;
  assert.equal(r.status, 130, r.stderr);
  const done = steps(out).length;
  assert.match(r.stderr, new RegExp(`interrupted at step ${done}: checkpoint saved to .*checkpoint-${done}; continue with --resume latest`));
  assert.ok(existsSync(join(out, `checkpoint-${done}`, 'model.safetensors')), 'the checkpoint of the last finished step');
  assert.ok(!existsSync(join(out, 'model.safetensors')), 'an interrupted run does not save a final model');

  const total = done + 2;
  const resumed = runCli([...trainArgs(dir, out), '--max-steps', String(total), '--resume', 'latest']);
  assert.equal(resumed.status, 0, resumed.stderr);
  const whole = runCli([...trainArgs(dir, join(dir, 'whole')), '--max-steps', String(total)]);
  assert.equal(whole.status, 0, whole.stderr);
  assert.deepEqual(steps(out).map((m) => m.step), Array.from({ length: total }, (_, i) => i + 1), 'each step logged once');
  assert.deepEqual(steps(out).map((m) => m.loss), steps(join(dir, 'whole')).map((m) => m.loss), 'interrupted + resumed = uninterrupted, bit for bit');
});

test('a second Ctrl-C exits at once, without waiting for the step', () => {
  // the work never finishes its "step" (a 20 s timer): only the second signal can end it
  const code = `
    import { onInterrupt } from './src/train/interrupt.ts';
    onInterrupt(() => { console.log('stop requested'); process.kill(process.pid, 'SIGINT'); }, 'finishing the step');
    setTimeout(() => console.log('step finished'), 20000);
    process.kill(process.pid, 'SIGINT');`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 15_000 });
  assert.equal(r.status, 130, `status ${r.status} signal ${r.signal}: ${r.stderr}`);
  assert.match(r.stdout, /stop requested/);
  assert.doesNotMatch(r.stdout, /step finished/);
  assert.match(r.stderr, /SIGINT: finishing the step \(press Ctrl-C again to exit now\)[\s\S]*SIGINT again: exiting now/);
  assert.ok(Date.now() - t0 < 10_000);
});

test('a resume cuts metrics.jsonl back to the checkpoint and removes the temporaries of killed saves', () => {
  const dir = setup();
  const out = join(dir, 'out');
  let r = runCli([...trainArgs(dir, out), '--max-steps', '5', '--save-every', '2']);
  assert.equal(r.status, 0, r.stderr);
  // what a kill -9 in the middle of saves leaves: a checkpoint folder and a model file under
  // temporary names of a process that is gone, and a torn metrics line
  const deadPid = 2 ** 22 + 12345; // above Linux's pid_max
  mkdirSync(join(out, `checkpoint-6.tmp-${deadPid}`));
  writeFileSync(join(out, `checkpoint-6.tmp-${deadPid}`, 'model.safetensors'), Buffer.alloc(1024));
  writeFileSync(join(out, `model.safetensors.tmp-${deadPid}`), Buffer.alloc(1024));
  writeFileSync(join(out, 'metrics.jsonl'), readFileSync(join(out, 'metrics.jsonl'), 'utf8') + '{"step":6,"lo');
  r = runCli([...trainArgs(dir, out), '--max-steps', '6', '--resume', 'latest', '--save-every', '2']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(steps(out).map((m) => m.step), [1, 2, 3, 4, 5, 6], 'steps 5 (after checkpoint-4) and the torn line are not kept twice');
  assert.deepEqual(readdirSync(out).filter((n) => n.includes('.tmp-')), [], 'no temporaries left');
});

test('--output equal to the --model folder is refused before anything is written', () => {
  const dir = setup();
  const base = join(dir, 'base');
  let r = runCli([...trainArgs(dir, base), '--max-steps', '1']);
  assert.equal(r.status, 0, r.stderr);
  const before = readFileSync(join(base, 'model.safetensors'));
  r = runCli(['train', '--model', base, '--data', join(dir, 'train.jsonl'), '--output', join(base, '.'), '--max-steps', '1', '--seq-len', '10', '--quiet']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--output .* is the --model folder: training would overwrite the base model/);
  assert.ok(readFileSync(join(base, 'model.safetensors')).equals(before));
});
