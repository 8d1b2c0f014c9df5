// `kestrel launch --elastic` through the real CLI: 3 ranks × grad-accum 2 train 8 steps with a
// checkpoint every 2; rank 1 is killed with SIGKILL mid-run (or rank 0 while it writes a
// checkpoint). The job must finish on 2 ranks × grad-accum 3 (the same 6 micro-batches per step,
// in the same order), metrics.jsonl must hold steps 1..8 exactly once, every checkpoint left must
// load, and the final loss must equal an uninterrupted 1-rank × grad-accum 6 run's within float32
// reduction-order tolerance (the per-rank float32 gradient sums are grouped differently: rtol 1e-5).
// Ctrl-C on the launcher saves and stops every rank. The grad-accum arithmetic and the refusal of a
// global batch that does not divide are checked without processes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { accumFor, flagValue, withFlag } from '../../src/dist/elastic.js';
import { listCheckpoints, loadCheckpoint } from '../../src/train/checkpoint.js';
import { runCli, startCli, tinyTrainDir, waitFor } from '../helpers.js';
import './train_runs.js'; // KESTREL_NUM_THREADS=1 for every rank

const STEPS = 8;

/** a model big enough that a checkpoint takes a while to write (the mid-save kill needs to land in it) */
function trainDir(): string {
  const dir = tinyTrainDir('kestrel-elastic-');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'llama', vocab_size: 2048, hidden_size: 128, intermediate_size: 256, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
  }));
  return dir;
}

const trainArgs = (dir: string, out: string, accum: number): string[] => ['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'),
  '--output', join(dir, out), '--max-steps', String(STEPS), '--batch-size', '2', '--seq-len', '10', '--eval-fraction', '0', '--dtype', 'fp32',
  '--grad-accum', String(accum), '--save-every', '2', '--quiet'];

function steps(dir: string, out: string): { step: number; loss: number }[] {
  return readFileSync(join(dir, out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });
}

/** the rank processes of a launcher (its children), by rank */
function ranksOf(launcherPid: number): Map<number, number> {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-P', String(launcherPid)], { encoding: 'utf8' });
  } catch {
    return new Map();
  }
  const byRank = new Map<number, number>();
  for (const pid of out.trim().split('\n').filter(Boolean).map(Number)) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const rank = env.find((e) => e.startsWith('RANK='));
      if (rank) byRank.set(Number(rank.slice(5)), pid);
    } catch {
      // gone already
    }
  }
  return byRank;
}

function checkFinished(dir: string, out: string, reference: { step: number; loss: number }[], stderr: string): void {
  const got = steps(dir, out);
  assert.deepEqual(got.map((s) => s.step), Array.from({ length: STEPS }, (_, i) => i + 1), `every step exactly once in metrics.jsonl\n${stderr}`);
  const [a, b] = [got.at(-1)!.loss, reference.at(-1)!.loss];
  assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(b), `final loss ${a} vs the uninterrupted run's ${b}`);
  for (const ck of listCheckpoints(join(dir, out))) {
    const c = loadCheckpoint(ck.path); // throws on a missing file or a bad header
    assert.equal(c.state.step, ck.step);
    c.model.close();
    c.optimizer.close();
  }
  assert.deepEqual(readdirSync(join(dir, out)).filter((n) => n.includes('.tmp-')), [], 'temporaries of a killed save are removed');
}

let reference: { step: number; loss: number }[] | null = null;
function uninterrupted(dir: string): { step: number; loss: number }[] {
  if (reference) return reference;
  const r = runCli(trainArgs(dir, 'reference', 6));
  assert.equal(r.status, 0, r.stderr);
  return (reference = steps(dir, 'reference'));
}

const dir = trainDir();

test('grad-accum keeps the global batch on fewer ranks, or the restart is refused clearly', () => {
  assert.equal(accumFor(6, 2), 3);
  assert.equal(accumFor(6, 3), 2);
  assert.throws(() => accumFor(6, 4), /global batch of 6 micro-batches \(batch-size × grad-accum × ranks\) does not divide over 4 ranks/);
  assert.deepEqual(withFlag(['train', '--grad-accum', '2', '--x'], '--grad-accum', '3'), ['train', '--x', '--grad-accum', '3']);
  assert.deepEqual(withFlag(['train', '--resume=out/checkpoint-2'], '--resume', 'latest'), ['train', '--resume', 'latest']);
  assert.equal(flagValue(['a', '--output=o'], '--output'), 'o');
});

test('kill -9 of a rank mid-run: the job finishes on 2 ranks, every step once, the same final loss', async () => {
  const ref = uninterrupted(dir);
  const cli = startCli(['launch', '--elastic', '--min-ranks', '2', '-n', '3', '--', 'kestrel', ...trainArgs(dir, 'killed', 2)], 300_000);
  const metrics = join(dir, 'killed', 'metrics.jsonl');
  await waitFor(() => existsSync(metrics) && readFileSync(metrics, 'utf8').trim().split('\n').length >= 3, 'step 3', 120_000);
  const victim = ranksOf(cli.child.pid!).get(1);
  assert.ok(victim, 'rank 1 is running');
  process.kill(victim, 'SIGKILL');
  const r = await cli.exited;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /rank 1 was killed by SIGKILL/);
  assert.match(r.stderr, /restarting on 2 ranks with --grad-accum 3 \(global batch unchanged\) from .*checkpoint-\d+/);
  checkFinished(dir, 'killed', ref, r.stderr);
});

test('kill -9 of rank 0 while it writes a checkpoint: no checkpoint is corrupt, the job finishes', async () => {
  const ref = uninterrupted(dir);
  const out = join(dir, 'midsave');
  const cli = startCli(['launch', '--elastic', '--min-ranks', '2', '-n', '3', '--', 'kestrel', ...trainArgs(dir, 'midsave', 2)], 300_000);
  // poll for a checkpoint being written (checkpoint-N.tmp-PID) and kill its writer then
  let killedMidSave = false;
  await waitFor(() => {
    const tmp = existsSync(out) ? readdirSync(out).find((n) => /^checkpoint-\d+\.tmp-\d+$/.test(n)) : undefined;
    if (!tmp) return false;
    const writer = Number(tmp.split('.tmp-')[1]);
    try {
      process.kill(writer, 'SIGKILL');
      killedMidSave = true;
    } catch {
      return false; // finished already: wait for the next save
    }
    return true;
  }, 'a checkpoint being written', 120_000);
  assert.ok(killedMidSave);
  const r = await cli.exited;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /rank 0 was killed by SIGKILL/);
  checkFinished(dir, 'midsave', ref, r.stderr);
});

test('a rank that fails with an error is not restarted: the job ends with its message', () => {
  const r = runCli(['launch', '--elastic', '--min-ranks', '1', '-n', '2', '--', 'kestrel', ...trainArgs(dir, 'bad', 2), '--lr', 'fast']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /rank [01] exited with code 1: .*--lr/);
  assert.match(r.stderr, /not restarting: the rank failed with an error, not by a signal/);
});

test('Ctrl-C on an elastic launch: every rank stops, rank 0 saves the step it finished, exit 130', async () => {
  const cli = startCli(['launch', '--elastic', '--min-ranks', '2', '-n', '2', '--', 'kestrel', ...trainArgs(dir, 'interrupted', 3)], 300_000);
  const metrics = join(dir, 'interrupted', 'metrics.jsonl');
  await waitFor(() => existsSync(metrics) && readFileSync(metrics, 'utf8').trim().split('\n').length >= 1, 'step 1', 120_000);
  cli.child.kill('SIGINT');
  const r = await cli.exited;
  assert.equal(r.status, 130, r.stderr);
  const last = steps(dir, 'interrupted').at(-1)!.step;
  assert.ok(last < STEPS, 'stopped before the end');
  assert.equal(listCheckpoints(join(dir, 'interrupted')).at(-1)?.step, last, 'a checkpoint of the last finished step');
  assert.doesNotMatch(r.stderr, /restarting/);
});
