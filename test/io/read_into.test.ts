// Reading safetensors tensors into existing tensors (SafetensorsFile.readInto, the lazy loader's
// path): same-dtype reads go straight into storage with no staging block; converting reads equal
// the reference backend's cast of the file's values bit for bit, also across staging chunks; I16
// and FP8 decode to the hand-worked values; a view with an offset is written in place and nowhere
// else; bad destinations, a file truncated after opening and out-of-range native reads are errors
// naming the file, the tensor or the range, never a crash. Runs on ref, cpu and cuda (emulated).
import '../devices.js';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { STAGING_BYTES } from '../../src/io/read_into.js';
import { seeded } from '../helpers.js';
import { skipUnless } from '../devices.js';

const dir = mkdtempSync(join(tmpdir(), 'kestrel-read-into-'));

/** A safetensors file from raw entries, in order (the format: u64 header length, JSON header, data). */
function writeRaw(path: string, entries: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[]): void {
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [at, at + e.bytes.length] };
    at += e.bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, ...entries.map((e) => Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength))]));
}

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
/** values as stored in `dtype` (rounded by the reference backend, the oracle) */
const stored = (v: Float64Array, dtype: k.DType): ArrayBufferView => k.tidy(() => k.toTypedArray(k.tensor(v, { dtype: 'float64', backend: 'ref' }).to(dtype)));

// more elements than one staging block holds, so a converting read takes several chunks
const BIG = STAGING_BYTES / 4 + 1000;
const vals = { small: seeded(15, 1), big: seeded(BIG, 2) };
const FILE = join(dir, 'mixed.safetensors');
writeRaw(FILE, [
  { name: 'f32', dtype: 'F32', shape: [3, 5], bytes: bytesOf(stored(vals.small, 'float32')) },
  { name: 'bf16', dtype: 'BF16', shape: [15], bytes: bytesOf(stored(vals.small, 'bfloat16')) },
  { name: 'f16', dtype: 'F16', shape: [15], bytes: bytesOf(stored(vals.small, 'float16')) },
  { name: 'big', dtype: 'F32', shape: [BIG], bytes: bytesOf(stored(vals.big, 'float32')) },
  { name: 'i64', dtype: 'I64', shape: [4], bytes: bytesOf(BigInt64Array.from([-5n, 0n, 7n, 1n << 40n])) },
  { name: 'i16', dtype: 'I16', shape: [5], bytes: bytesOf(Int16Array.from([-32768, -1, 0, 1, 32767])) },
  // E4M3: 0x38 = 1 (exponent 7 = bias), 0x40 = 2, 0xb8 = -1, 0x01 = 2^-9 (subnormal), 0x7f = NaN
  { name: 'f8', dtype: 'F8_E4M3', shape: [5], bytes: Uint8Array.from([0x38, 0x40, 0xb8, 0x01, 0x7f]) },
]);

/** What readInto must produce: the file's values (as stored) cast by the reference backend. */
function expected(name: 'f32' | 'bf16' | 'f16' | 'big', dst: k.DType): ArrayBufferView {
  const fileDtype = { f32: 'float32', big: 'float32', bf16: 'bfloat16', f16: 'float16' }[name] as k.DType;
  const v = name === 'big' ? vals.big : vals.small;
  return k.tidy(() => k.toTypedArray(k.tensor(v, { dtype: 'float64', backend: 'ref' }).to(fileDtype).to(dst)));
}

const sameBits = (got: ArrayBufferView, want: ArrayBufferView, what: string): void =>
  assert.ok(Buffer.from(bytesOf(got)).equals(Buffer.from(bytesOf(want))), `${what}: bytes differ`);

for (const backend of ['ref', 'cpu', 'cuda'] as const) {
  const skip = backend === 'ref' ? false : skipUnless(backend);
  describe(`readInto on ${backend}`, { skip }, () => {
    test('same dtype: the file bytes land in storage with no staging block', () => {
      using f = new SafetensorsFile(FILE);
      for (const [name, dtype, shape] of [['f32', 'float32', [3, 5]], ['bf16', 'bfloat16', [15]], ['i64', 'int64', [4]]] as const) {
        const dst = k.empty([...shape], dtype, { backend });
        k.memory.resetPeak();
        const before = k.memory.stats().current.total;
        f.readInto(name, dst);
        // a direct read allocates nothing; a backend without readFile (cuda) stages one chunk
        if (backend !== 'cuda') assert.equal(k.memory.stats().peak.total, before, `${name}: no staging on ${backend}`);
        sameBits(k.toTypedArray(dst), f.readBytes(name), name);
        dst.dispose();
      }
    });

    test('converting reads equal the reference cast bit for bit, across staging chunks', () => {
      using f = new SafetensorsFile(FILE);
      const cases: ['f32' | 'bf16' | 'f16' | 'big', k.DType][] = [
        ['f32', 'bfloat16'], ['f32', 'float16'], ['f32', 'float64'], ['bf16', 'float32'], ['f16', 'float32'], ['bf16', 'float16'], ['big', 'bfloat16'],
      ];
      for (const [name, dtype] of cases) {
        const dst = k.empty(name === 'big' ? [BIG] : [15], dtype, { backend });
        k.memory.resetPeak();
        const before = k.memory.stats().current.total;
        f.readInto(name, dst);
        // at most one staging block of the file's dtype beside the destination
        assert.ok(k.memory.stats().peak.total - before <= STAGING_BYTES, `${name} -> ${dtype}: staged ${k.memory.stats().peak.total - before} bytes`);
        sameBits(k.toTypedArray(dst), expected(name, dtype), `${name} -> ${dtype}`);
        dst.dispose();
      }
    });

    test('I16 and FP8 decode to the hand-worked values', () => {
      using f = new SafetensorsFile(FILE);
      const i = k.empty([5], 'int32', { backend });
      f.readInto('i16', i);
      assert.deepEqual([...(k.toTypedArray(i) as Int32Array)], [-32768, -1, 0, 1, 32767]);
      const x = k.empty([5], 'float32', { backend });
      f.readInto('f8', x);
      const got = [...(k.toTypedArray(x) as Float32Array)];
      assert.deepEqual(got.slice(0, 4), [1, 2, -1, 2 ** -9]);
      assert.ok(Number.isNaN(got[4]));
      i.dispose();
      x.dispose();
    });

    test('a contiguous view with an offset is written in place and nowhere else', () => {
      using f = new SafetensorsFile(FILE);
      const whole = k.zeros([3, 15], { backend });
      const row = k.narrow(whole, 0, 1, 1); // elements 15..29 of the storage
      f.readInto('bf16', row);
      const all = k.toTypedArray(whole) as Float32Array;
      sameBits(all.subarray(15, 30), expected('bf16', 'float32'), 'row 1');
      assert.ok(all.subarray(0, 15).every((v) => v === 0) && all.subarray(30).every((v) => v === 0), 'rows 0 and 2 untouched');
      row.dispose();
      whole.dispose();
    });
  });
}

describe('readInto errors', () => {
  test('a wrong element count or a strided destination names the file, the tensor and the shapes', () => {
    using f = new SafetensorsFile(FILE);
    const wrong = k.empty([4, 5], 'float32', { backend: 'ref' });
    assert.throws(() => f.readInto('f32', wrong), (e: Error) => e.message.includes(`${FILE}: tensor 'f32'`) && /\[3, 5\] has 15 elements, the destination \[4, 5\] 20/.test(e.message));
    const t = k.empty([5, 3], 'float32', { backend: 'ref' });
    const strided = k.transpose(t, 0, 1);
    assert.throws(() => f.readInto('f32', strided), /tensor 'f32': the destination \[3, 5\] must be contiguous/);
    for (const x of [wrong, strided, t]) x.dispose();
  });

  for (const backend of ['ref', 'cpu'] as const) {
    test(`a file truncated after it was opened: the error names the file and tensor (${backend})`, { skip: backend === 'cpu' ? skipUnless('cpu') : false }, () => {
      const path = join(dir, `cut-${backend}.safetensors`);
      writeRaw(path, [{ name: 'w', dtype: 'F32', shape: [1000], bytes: bytesOf(stored(seeded(1000, 3), 'float32')) }]);
      using f = new SafetensorsFile(path);
      truncateSync(path, 2000); // the header and part of the data remain
      const dst = k.empty([1000], 'float32', { backend });
      assert.throws(() => f.readInto('w', dst), (e: Error) => e.message.startsWith(`${path}: tensor 'w'`) && /unexpected end of file/.test(e.message));
      dst.dispose();
    });
  }

  test('the native readFile refuses ranges outside the storage, bad descriptors and positions', { skip: skipUnless('cpu') }, () => {
    const cpu = k.getBackend('cpu');
    const fd = openSync(FILE, 'r');
    const t = k.empty([4], 'float32', { backend: 'cpu' }); // 16 bytes
    assert.throws(() => cpu.readFile!(t.storage, 8, fd, 8, 12), /range \[8, \+12\) outside storage of 16 bytes/);
    assert.throws(() => cpu.readFile!(t.storage, 17, fd, 8, 0), /outside storage of 16 bytes/);
    assert.throws(() => cpu.readFile!(t.storage, 0, -1, 0, 4), /non-negative integers/);
    assert.throws(() => cpu.readFile!(t.storage, 0, fd, 0.5, 4), /non-negative integers/);
    assert.throws(() => cpu.readFile!(t.storage, 0, 987654, 0, 4), /readFile: read failed at file offset 0: Bad file descriptor/);
    cpu.readFile!(t.storage, 0, fd, 0, 16); // in range: fine
    t.dispose();
    assert.throws(() => cpu.readFile!(t.storage, 0, fd, 0, 4), /disposed storage/);
    closeSync(fd);
  });
});
