// Runs another `kestrel` command as a child process of this one, with the same code: from the
// compiled package through bin/kestrel.js, from the TypeScript sources (tests, a dev checkout)
// through tsx. Training jobs are such children, so a crash or a stop never touches the server.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** `kestrel <args>` as a child; stdout ignored, stderr piped (the caller keeps its tail). */
export function spawnKestrel(args: string[]): ChildProcess {
  const fromSources = import.meta.url.endsWith('.ts');
  const main = new URL(`../cli/main.${fromSources ? 'ts' : 'js'}`, import.meta.url).href;
  const code = `const { run } = await import(${JSON.stringify(main)}); process.exitCode = await run(${JSON.stringify(args)});`;
  const argv = fromSources ? ['--import', 'tsx', '--input-type=module', '-e', code] : [fileURLToPath(new URL('../../bin/kestrel.js', import.meta.url)), ...args];
  return spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The end of a child's stderr, kept as it arrives (for the error a failed job reports). */
export function stderrTail(child: ChildProcess, bytes = 4000): () => string {
  let tail = '';
  child.stderr!.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-bytes)));
  return () => tail;
}
