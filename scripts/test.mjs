// Runs every test/**/*.test.ts with Node's test runner (Node 20's --test takes no globs). Once dist/
// is up to date with src/ (rebuilt here when it is not), the tests and every process they start
// (ranks, CLI runs, Studio jobs) run plain JS, Kestrel from dist/ (src/cli/self.ts, test/child_js.ts);
// otherwise the tests run from the sources through tsx.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(dir, suffix) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? find(p, suffix) : p.endsWith(suffix) ? [p] : [];
  });
}

/**
 * Whether every src/**.ts has its dist/**.js, written after it and after tsconfig.json. Emitted
 * files whose source is gone are deleted first (tsc leaves them), so that no child imports code
 * the sources no longer have; dist/studio is Vite's.
 */
function distUpToDate() {
  for (const js of existsSync('dist') ? find('dist', '.js') : []) {
    const ts = join('src', js.slice('dist/'.length).replace(/\.js$/, '.ts'));
    if (!js.startsWith('dist/studio/') && !existsSync(ts)) for (const f of [js, `${js}.map`, js.replace(/\.js$/, '.d.ts')]) rmSync(f, { force: true });
  }
  const config = statSync('tsconfig.json').mtimeMs;
  return find('src', '.ts').every((ts) => {
    const js = join('dist', ts.slice('src/'.length).replace(/\.ts$/, '.js'));
    return ts.endsWith('.d.ts') || (existsSync(js) && statSync(js).mtimeMs >= Math.max(statSync(ts).mtimeMs, config));
  });
}

function childrenFromDist() {
  if (distUpToDate()) return true;
  process.stderr.write('scripts/test.mjs: dist/ is older than src/; rebuilding it (tsc -p tsconfig.json)\n');
  const r = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
  if (r.status === 0 && distUpToDate()) return true;
  process.stderr.write('scripts/test.mjs: dist/ could not be rebuilt; kestrel children start from the sources through tsx\n');
  return false;
}

// The longest files start first (each over a minute of sequential training on 2 cores), so that
// neither is left running alone at the end while the other slot idles; the rest in order.
const FIRST = ['test/cli/demo.test.ts', 'test/train/asr_learns.test.ts'];
const all = find('test', '.test.ts').sort();
const files = process.argv.length > 2 ? process.argv.slice(2) : [...FIRST.filter((f) => all.includes(f)), ...all.filter((f) => !FIRST.includes(f))];
const fromDist = childrenFromDist();
const env = { ...process.env, KESTREL_CHILD_FROM_DIST: fromDist ? '1' : '0' };
let r;
if (fromDist) {
  // the test files themselves run as plain JS too (test/child_js.ts transpiles them and their test
  // imports; Kestrel comes from dist/): no test process pays tsx's loader (~2 s of CPU for each of
  // ~230 files); source maps point failures at the .ts lines
  const code = `const { transpiledFile } = await import('./test/child_js.ts'); process.stdout.write(JSON.stringify(${JSON.stringify(files)}.map(transpiledFile)));`;
  const t = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (t.status !== 0) process.exit(t.status ?? 1);
  r = spawnSync(process.execPath, ['--enable-source-maps', '--test', '--test-concurrency=2', ...JSON.parse(t.stdout)], { stdio: 'inherit', env });
} else {
  r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], { stdio: 'inherit', env });
}
process.exit(r.status ?? 1);
