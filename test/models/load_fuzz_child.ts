// The child side of load_fuzz.test.ts: loads every folder listed in the JSON file $LOAD_FUZZ_LIST with
// loadPretrained and prints one JSON line per folder, as it goes: the state dict's digest, or the
// error. Run in its own process so that an abort or a hang is seen by the parent, not suffered.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadPretrained } from '../../src/models/load.js';
import { toTypedArray } from '../../src/ops/transfer.js';
import type { Module } from '../../src/nn/module.js';

/** sha256 over every state-dict entry (name, dtype, shape and bytes), in name order. */
export function stateDigest(model: Module): string {
  const h = createHash('sha256');
  const sd = model.stateDict();
  for (const name of Object.keys(sd).sort()) {
    const t = sd[name];
    const a = toTypedArray(t);
    h.update(`${name} ${t.dtype} [${t.shape.join(',')}]\n`).update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest('hex');
}

export interface FuzzResult {
  i: number;
  digest?: string;
  error?: string;
  /** whether what was thrown is an Error */
  isError?: boolean;
}

async function main(list: string): Promise<void> {
  const dirs = JSON.parse(readFileSync(list, 'utf8')) as string[];
  for (const [i, dir] of dirs.entries()) {
    let r: FuzzResult;
    try {
      const { model } = await loadPretrained(dir);
      r = { i, digest: stateDigest(model) };
      model.dispose();
    } catch (e) {
      r = { i, error: e instanceof Error ? e.message : String(e), isError: e instanceof Error };
    }
    process.stdout.write(JSON.stringify(r) + '\n');
  }
}

// the test imports stateDigest from here too: only the child is given a list
const list = process.env.LOAD_FUZZ_LIST;
if (list) await main(list);
