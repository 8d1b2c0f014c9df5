// `kestrel launch`: a failing rank reaches the launcher with its rank and message and the other
// ranks are stopped; Ctrl-C stops every rank; in both cases no rank process is left.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startCli, waitFor } from '../helpers.js';
import { alive } from './ranks.js';
import { childArgs } from '../child_js.js';

const RANK_FILE = fileURLToPath(new URL('./launch_rank.ts', import.meta.url));
const N = 3;

function pids(dir: string): number[] {
  return readdirSync(dir).filter((f) => /^\d+$/.test(f)).map((f) => Number(readFileSync(join(dir, f), 'utf8')));
}

function start(mode: string): { dir: string; cli: ReturnType<typeof startCli> } {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-launch-'));
  process.env.PID_DIR = dir; // the launcher passes its environment on to the ranks
  process.env.MODE = mode;
  const cli = startCli(['launch', '-n', String(N), '--', process.execPath, ...childArgs(RANK_FILE)], 30_000);
  return { dir, cli };
}

test('a failing rank: the launcher names it with its message, stops the others and exits non-zero', async () => {
  const { dir, cli } = start('fail');
  const r = await cli.exited;
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /kestrel launch: rank 1 exited with code 1: .*boom in rank 1/);
  assert.equal(pids(dir).length, N);
  for (const pid of pids(dir)) assert.equal(alive(pid), false, `rank pid ${pid} is still running`);
});

test('Ctrl-C on the launcher stops every rank and exits 130', async () => {
  const { dir, cli } = start('idle');
  await waitFor(() => pids(dir).length === N, 'every rank to start', 20_000);
  cli.child.kill('SIGINT');
  const r = await cli.exited;
  assert.equal(r.status, 130, r.stderr);
  assert.match(r.stderr, /interrupted by SIGINT; every rank was stopped/);
  for (const pid of pids(dir)) assert.equal(alive(pid), false, `rank pid ${pid} is still running`);
});

test('launch --help and a missing command', async () => {
  const help = startCli(['launch', '--help']);
  const h = await help.exited;
  assert.equal(h.status, 0);
  assert.match(h.stdout, /-n, --nproc N/);
  const bad = await startCli(['launch', '-n', '2']).exited;
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /give the command to run after --/);
});
