// Strict loading: a checkpoint tensor named like an Object.prototype property ('__proto__',
// 'constructor') is unexpected, not inherited; a float parameter stored as an integer or bool dtype
// is refused (never cast); mismatches name the safetensors file, the tensor and config.json.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { loadPretrained } from '../../src/models/load.js';
import { joinSafetensors, saveTiny, splitSafetensors } from './tiny_llama.js';

/** A saved TINY folder whose model.safetensors header text goes through edit (data may grow). */
function editedFolder(edit: (json: string, data: Buffer) => { json: string; data: Buffer }): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-load-'));
  saveTiny(dir).dispose();
  const file = join(dir, 'model.safetensors');
  const { json, data } = edit(...Object.values(splitSafetensors(readFileSync(file))) as [string, Buffer]);
  writeFileSync(file, joinSafetensors(json, data));
  return { dir, file };
}

for (const name of ['__proto__', 'constructor', 'toString'])
  test(`an extra tensor named '${name}' is unexpected, naming the file`, async () => {
    const { dir, file } = editedFolder((json, data) => ({
      json: `{"${name}":{"dtype":"F32","shape":[1],"data_offsets":[${data.length},${data.length + 4}]},${json.slice(1)}`,
      data: Buffer.concat([data, Buffer.alloc(4)]),
    }));
    await assert.rejects(loadPretrained(dir), (e: Error) => e.message.includes(file) && e.message.includes(`unexpected [${name}]`));
  });

test('a float parameter stored as I32 (same byte size) is refused, naming the file, tensor and dtype', async () => {
  const { dir, file } = editedFolder((json, data) => {
    const h = JSON.parse(json);
    h['model.norm.weight'].dtype = 'I32';
    return { json: JSON.stringify(h), data };
  });
  await assert.rejects(loadPretrained(dir), (e: Error) => e.message.includes(file) && /'model\.norm\.weight' is stored as I32/.test(e.message));
});

test('a float parameter stored as an integer or bool dtype of its own shape is refused', async () => {
  for (const dtype of ['uint8', 'int8', 'bool', 'int64'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'kestrel-load-'));
    const model = saveTiny(dir);
    const file = join(dir, 'model.safetensors');
    k.tidy(() => k.saveSafetensors(file, { ...model.stateDict(), 'model.norm.weight': k.ones([16], { dtype }) }));
    model.dispose();
    await assert.rejects(loadPretrained(dir), (e: Error) => e.message.includes(file) && e.message.includes("'model.norm.weight' is stored as"), dtype);
  }
});

test('a shape mismatch names the safetensors file, the tensor and config.json', async () => {
  const { dir, file } = editedFolder((json, data) => {
    const h = JSON.parse(json);
    h['model.norm.weight'].shape = [4, 4];
    return { json: JSON.stringify(h), data };
  });
  await assert.rejects(loadPretrained(dir), (e: Error) =>
    e.message.includes(file) && e.message.includes(join(dir, 'config.json')) && /'model\.norm\.weight' is \[4, 4\]/.test(e.message));
});
