// Flag values are checked once, against the rule of the setting they set, and a bad one names
// the flag (or the run-file key, or the DeepSpeed field) and the value, before any model loads.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseFlags } from '../../src/cli/flags.js';
import { samplingFlags } from '../../src/cli/model_args.js';
import { resolveSettings } from '../../src/cli/train.js';
import { generate } from '../../src/infer/generate.js';
import { tensor } from '../../src/ops/creation.js';
import { fromDeepSpeed, readRunFile } from '../../src/train/run_config.js';
import { runCli } from '../helpers.js';

const base = ['--model', 'm', '--data', 'd.jsonl', '--output', 'o'];

test('train flags out of range are errors naming the flag and value', () => {
  const bad: [string[], RegExp][] = [
    [['--lr=-1'], /--lr must be a number >= 0, got -1/],
    [['--clip=-1'], /--clip must be a number >= 0, got -1/],
    [['--warmup=-5'], /--warmup must be an integer >= 0, got -5/],
    [['--save-every=-1'], /--save-every must be an integer >= 0, got -1/],
    [['--max-steps', '-1'], /--max-steps must be an integer >= 1, got -1/],
    [['--max-steps', '2.5'], /--max-steps must be an integer >= 1, got 2.5/],
    [['--batch-size', '0'], /--batch-size must be an integer >= 1, got 0/],
    [['--eval-fraction', '1'], /--eval-fraction must be a number >= 0 < 1, got 1/],
    [['--seed', '-3'], /--seed must be an integer >= 0, got -3/],
    [['--lr', 'fast'], /--lr must be a number, got 'fast'/],
    [['--keep-last', '-2'], /--keep-last must be an integer >= 0, got -2/],
  ];
  for (const [flags, re] of bad) assert.throws(() => resolveSettings([...base, ...flags]), re, flags.join(' '));
  assert.equal(resolveSettings([...base, '--lr', '0', '--clip', '0', '--warmup', '3']).settings.schedule.warmup, 3, 'zero lr / clip off and a warm-up are fine');
});

test('a negative number after a flag is its value, not an unknown option', () => {
  assert.deepEqual({ ...parseFlags(['--x', '-1.5', '--y', '-2'], { x: { type: 'string' }, y: { type: 'string' } }).values }, { x: '-1.5', y: '-2' });
  assert.throws(() => parseFlags(['--x', '-q'], { x: { type: 'string' } }), /ambiguous/, 'a dash word is still not a value');
  assert.throws(() => parseFlags(['--nope', '1'], { x: { type: 'string' } }), /Unknown option '--nope'/);
});

test('run files and DeepSpeed configs name the key of a bad value', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-flags-'));
  writeFileSync(join(dir, 'run.yaml'), 'max_steps: -4\n');
  assert.throws(() => readRunFile(join(dir, 'run.yaml')), /run\.yaml: 'maxSteps' must be an integer >= 1, got -4/);
  writeFileSync(join(dir, 'run.json'), JSON.stringify({ lr: 'high' }));
  assert.throws(() => readRunFile(join(dir, 'run.json')), /run\.json: 'lr' must be a number >= 0, got 'high'/);
  assert.throws(() => fromDeepSpeed({ gradient_clipping: -1 }, 'ds.json'), /ds\.json: 'gradient_clipping' must be a number >= 0, got -1/);
  assert.throws(() => fromDeepSpeed({ optimizer: { type: 'AdamW', params: { betas: [0.9, 1.5] } } }, 'ds.json'), /ds\.json: 'optimizer\.params\.betas'\[1\] must be a number >= 0 < 1, got 1\.5/);
  assert.throws(() => fromDeepSpeed({ fp16: { enabled: true, min_loss_scale: 0 } }, 'ds.json'), /ds\.json: 'fp16\.min_loss_scale' must be a number > 0, got 0/);
});

test('sampling flags and generate() options out of range are errors', async () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ temperature: '-1' }, /--temperature must be a number >= 0, got -1/],
    [{ 'top-k': '-3' }, /--top-k must be an integer >= 0, got -3/],
    [{ 'top-p': '5' }, /--top-p must be a number > 0 <= 1, got 5/],
    [{ 'max-new-tokens': '-5' }, /--max-new-tokens must be an integer >= 0, got -5/],
    [{ 'repetition-penalty': '0' }, /--repetition-penalty must be a number > 0, got 0/],
  ];
  for (const [values, re] of bad) assert.throws(() => samplingFlags(values), re);
  // the library checks the same rules for its callers (a model is not needed to fail)
  const model = { config: { eosTokenIds: [] } } as unknown as Parameters<typeof generate>[0];
  await assert.rejects(generate(model, tensor([[1, 2]], { dtype: 'int64' }), { topP: 5 }), /generate: topP must be a number > 0 <= 1, got 5/);
});

test('kestrel train --max-steps -1 and kestrel generate --top-k -3 fail before loading anything', () => {
  let r = runCli(['train', ...base, '--max-steps', '-1']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /kestrel train: --max-steps must be an integer >= 1, got -1/);
  r = runCli(['generate', '--model', 'no/such/folder', '--prompt', 'x', '--top-k', '-3']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /kestrel generate: --top-k must be an integer >= 0, got -3/);
});
