// Runs another `kestrel` command as a child process of this one, with the same code (src/cli/self.ts).
// Training jobs are such children, so a crash or a stop never touches the server.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { kestrelCommand } from '../cli/self.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** `kestrel <args>` as a child; stdout ignored, stderr piped (the caller keeps its tail). */
export function spawnKestrel(args: string[]): ChildProcess {
  const { command, args: argv } = kestrelCommand(args);
  return spawn(command, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The end of a child's stderr, kept as it arrives (for the error a failed job reports). */
export function stderrTail(child: ChildProcess, bytes = 4000): () => string {
  let tail = '';
  child.stderr!.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-bytes)));
  return () => tail;
}
