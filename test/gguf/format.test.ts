// The GGUF container: a file with metadata of every value type, tensors of odd shapes (padding
// between them) and a non-default general.alignment, read back by @huggingface/gguf (an independent
// reader) and by Kestrel's own; clear errors for a bad magic, a truncated file, an unknown tensor
// type; the writer refuses duplicate names and wrong data sizes and leaves no partial file.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gguf } from '@huggingface/gguf';
import { encodeGgml } from '../../src/gguf/codec.js';
import { GgufFile } from '../../src/gguf/reader.js';
import { type GgufTensorSpec, type GgufValue, writeGguf } from '../../src/gguf/writer.js';

const dir = mkdtempSync(join(tmpdir(), 'kestrel-gguf-format-'));

const KV: [string, GgufValue, unknown][] = [
  ['t.u8', { kind: 'uint8', value: 250 }, 250], ['t.i8', { kind: 'int8', value: -7 }, -7],
  ['t.u16', { kind: 'uint16', value: 65000 }, 65000], ['t.i16', { kind: 'int16', value: -30000 }, -30000],
  ['t.u32', { kind: 'uint32', value: 4e9 }, 4e9], ['t.i32', { kind: 'int32', value: -2e9 }, -2e9],
  ['t.f32', { kind: 'float32', value: 0.5 }, 0.5], ['t.bool', { kind: 'bool', value: true }, true],
  ['t.str', { kind: 'string', value: 'héllo ✓' }, 'héllo ✓'], ['t.u64', { kind: 'uint64', value: 2n ** 40n }, 2n ** 40n],
  ['t.i64', { kind: 'int64', value: -5n }, -5n], ['t.f64', { kind: 'float64', value: 1 / 3 }, 1 / 3],
  ['t.ints', { kind: 'array', of: 'int32', values: [1, -2, 3] }, [1, -2, 3]],
  ['t.strs', { kind: 'array', of: 'string', values: ['a', '', 'c c'] }, ['a', '', 'c c']],
  ['t.nested', { kind: 'array', of: 'array', values: [{ kind: 'array', of: 'uint8', values: [1, 2] }, { kind: 'array', of: 'uint8', values: [] }] }, [[1, 2], []]],
  ['general.alignment', { kind: 'uint32', value: 64 }, 64],
];

const f32 = Float32Array.from({ length: 15 }, (_, i) => i / 4);
const q8 = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
const TENSORS: GgufTensorSpec[] = [
  { name: 'a', type: 'F32', shape: [3, 5], data: () => encodeGgml('F32', f32) },
  { name: 'b', type: 'Q8_0', shape: [2, 32], data: () => encodeGgml('Q8_0', q8) },
  { name: 'c', type: 'F16', shape: [7], data: () => encodeGgml('F16', new Float32Array(7).fill(1)) },
];

const file = join(dir, 'all.gguf');
writeGguf(file, new Map(KV.map(([k, v]) => [k, v])), TENSORS);

/** @huggingface/gguf reads 64-bit values as bigint and 8/16/32-bit ones as numbers. */
const asHf = (v: unknown): unknown => (typeof v === 'bigint' ? v : Array.isArray(v) ? v.map(asHf) : v);

test('@huggingface/gguf reads every metadata type and the tensor infos (ne order, type, aligned offsets)', async () => {
  const r = await gguf(file, { allowLocalFile: true });
  assert.equal(r.metadata.version, 3);
  for (const [k, , want] of KV) {
    const got = (r.metadata as Record<string, unknown>)[k];
    if (k === 't.f32') assert.equal(got, 0.5);
    else assert.deepEqual(got, asHf(want), k);
  }
  assert.deepEqual(r.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype]), [['a', [5, 3], 0], ['b', [32, 2], 8], ['c', [7], 1]]);
  // a: 60 bytes, padded to 64; b: 68 bytes at 64, padded to 192; c at 192
  assert.deepEqual(r.tensorInfos.map((t) => Number(t.offset)), [0, 64, 192]);
  assert.equal(Number(r.tensorDataOffset) % 64, 0);
});

test("Kestrel's reader returns the same metadata and each tensor's bytes as written", () => {
  const g = new GgufFile(file);
  try {
    assert.equal(g.version, 3);
    for (const [k, , want] of KV) assert.deepEqual(g.metadata.get(k), typeof want === 'bigint' && want < 2n ** 53n && want > -(2n ** 53n) ? Number(want) : want, k);
    assert.deepEqual(g.tensors.get('a')!.shape, [3, 5]);
    for (const t of TENSORS) assert.deepEqual(g.readBytes(t.name), t.data(), t.name);
    assert.throws(() => g.get('t.str', 'number'), /metadata 't.str' should be a number/);
    assert.throws(() => g.get('missing.key', 'string'), /metadata 'missing.key' is missing/);
  } finally {
    g.close();
  }
});

test('a bad magic, a truncated file and an unknown tensor type are errors naming the file', () => {
  const bytes = readFileSync(file);
  const bad = join(dir, 'bad.gguf');
  writeFileSync(bad, Buffer.concat([Buffer.from('GGUX'), bytes.subarray(4)]));
  assert.throws(() => new GgufFile(bad), (e: Error) => e.message.includes(bad) && /no 'GGUF' magic/.test(e.message));
  writeFileSync(bad, bytes.subarray(0, 100));
  assert.throws(() => new GgufFile(bad), /truncated/);
  // the data section cut off: the last tensor runs past the end
  writeFileSync(bad, bytes.subarray(0, bytes.length - 60)); // c (14 bytes at 192 of 256) cut
  assert.throws(() => new GgufFile(bad), /tensor 'c' .* runs past the end of the file/);
  // tensor a's type id (u32 after its 2 dims) set to 99
  const copy = Buffer.from(bytes);
  const at = copy.indexOf(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0x61, 2, 0, 0, 0])) + 9 + 4 + 16; // name 'a', 2 dims, 2 u64s
  copy.writeUInt32LE(99, at);
  writeFileSync(bad, copy);
  assert.throws(() => new GgufFile(bad), /tensor 'a' has ggml type 99, which Kestrel does not read/);
});

test('the writer refuses duplicate names and wrong data sizes, and leaves the old file and no temp file', () => {
  const target = join(dir, 'keep.gguf');
  writeFileSync(target, 'old');
  const kv = new Map<string, GgufValue>();
  assert.throws(() => writeGguf(target, kv, [TENSORS[0], TENSORS[0]]), /tensor 'a' is written twice/);
  assert.throws(() => writeGguf(target, kv, [{ ...TENSORS[0], data: () => new Uint8Array(8) }]), /'a' \(F32 \[3, 5\]\) needs 60 bytes, got 8/);
  assert.equal(readFileSync(target, 'utf8'), 'old');
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
  assert.ok(existsSync(target));
});
