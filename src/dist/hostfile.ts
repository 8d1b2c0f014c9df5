// DeepSpeed's hostfile: one machine per line, `hostname slots=N` (N ranks there), `#` comments
// and blank lines allowed. `kestrel launch --hostfile FILE` reads it and starts the ranks across
// those machines through mpirun (mpirun.ts), which takes the hosts in its own syntax.
import { readFileSync } from 'node:fs';

export interface Host {
  name: string;
  slots: number;
}

/**
 * The hosts of a hostfile's text; errors name `file:line`.
 * @example parseHostfile('worker-1 slots=4\n# spare\nworker-2 slots=4\n', 'hosts') // [{ name: 'worker-1', slots: 4 }, { name: 'worker-2', slots: 4 }]
 */
export function parseHostfile(text: string, file: string): Host[] {
  const hosts: Host[] = [];
  const seen = new Map<string, number>();
  text.split('\n').forEach((raw, i) => {
    const where = `${file}:${i + 1}`;
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const m = /^(\S+)\s+slots\s*=\s*(\S+)$/.exec(line);
    if (!m) throw new Error(`${where}: expected 'hostname slots=N', got '${raw.trim()}'`);
    const slots = Number(m[2]);
    if (!Number.isInteger(slots) || slots < 1) throw new Error(`${where}: slots must be a positive integer, got '${m[2]}'`);
    if (!/^[A-Za-z0-9._:[\]-]+$/.test(m[1])) throw new Error(`${where}: '${m[1]}' is not a host name or address`);
    const earlier = seen.get(m[1]);
    if (earlier !== undefined) throw new Error(`${where}: host '${m[1]}' is listed again (first at line ${earlier})`);
    seen.set(m[1], i + 1);
    hosts.push({ name: m[1], slots });
  });
  if (!hosts.length) throw new Error(`${file}: no hosts (lines of 'hostname slots=N')`);
  return hosts;
}

/** Reads and parses a hostfile. */
export function readHostfile(path: string): Host[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`--hostfile ${path}: ${(e as Error).message}`);
  }
  return parseHostfile(text, path);
}
