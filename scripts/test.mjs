// Runs every test/**/*.test.ts with Node's test runner through tsx (Node 20's --test takes no globs).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? find(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

// The longest files start first (each over a minute of sequential training on 2 cores), so that
// neither is left running alone at the end while the other slot idles; the rest in order.
const FIRST = ['test/cli/demo.test.ts', 'test/train/asr_learns.test.ts'];
const all = find('test').sort();
const files = process.argv.length > 2 ? process.argv.slice(2) : [...FIRST.filter((f) => all.includes(f)), ...all.filter((f) => !FIRST.includes(f))];
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
