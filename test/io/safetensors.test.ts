// safetensors: reads the transformers-written fixture, round-trips every dtype bit-exactly,
// writes the reference serializer's exact bytes, and rejects corrupt files with a clear error.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile, saveSafetensors } from '../../src/io/safetensors.js';
import { fixture } from '../fixtures.js';

k.setDefaultBackend('ref');
const dir = mkdtempSync(join(tmpdir(), 'kestrel-st-'));
const llama = fixture('models', 'llama', 'model.safetensors');

describe('safetensors', () => {
  test('reads the llama fixture lazily by name', { skip: llama.skip }, () => {
    using f = new SafetensorsFile(llama.path);
    assert.deepEqual(f.metadata, { format: 'pt' });
    assert.ok(f.names.includes('model.embed_tokens.weight'));
    assert.deepEqual(f.info('lm_head.weight').shape, [256, 64]);
    const t = f.tensor('model.norm.weight');
    assert.equal(t.dtype, 'float32');
    assert.deepEqual(t.shape, [64]);
    t.dispose();
  });

  test('writes the same bytes the reference serializer wrote', { skip: llama.skip }, () => {
    using f = new SafetensorsFile(llama.path);
    const tensors = Object.fromEntries(f.names.map((n) => [n, f.tensor(n)]));
    const out = join(dir, 'copy.safetensors');
    saveSafetensors(out, tensors, f.metadata);
    assert.ok(readFileSync(out).equals(readFileSync(llama.path)));
    for (const t of Object.values(tensors)) t.dispose();
  });

  test('round-trips every dtype bit-exactly', () => {
    k.tidy(() => {
      const ts: Record<string, k.Tensor> = {};
      // fractions and float16's largest value for the float dtypes; integer dtypes take only what they hold
      const floats = ['float64', 'float32', 'float16', 'bfloat16'];
      for (const dtype of k.DTYPES)
        ts[`t.${dtype}`] = k.tensor(floats.includes(dtype) ? [[0, 1.5, -2], [3, 65504, 7]] : [[0, 1, 0], [3, 127, 1]], { dtype });
      ts['scalar'] = k.tensor(3);
      ts['empty'] = k.zeros([0, 4]);
      const p = join(dir, 'all.safetensors');
      saveSafetensors(p, ts, { note: 'x' });
      using f = new SafetensorsFile(p);
      assert.deepEqual(f.metadata, { note: 'x' });
      for (const [name, t] of Object.entries(ts)) {
        const back = f.tensor(name);
        assert.equal(back.dtype, t.dtype, name);
        assert.deepEqual(back.shape, t.shape, name);
        assert.deepEqual([...back.toTypedArray()], [...t.toTypedArray()], name);
      }
    });
  });

  describe('corrupt files name the file and the problem', () => {
    const header = (h: object, data = 0): Buffer => {
      const json = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([len, json, Buffer.alloc(data)]);
    };
    const cases: [string, Buffer, RegExp][] = [
      ['too short', Buffer.alloc(3), /shorter than the 8-byte header length/],
      ['header past the end', Buffer.concat([Buffer.from([200, 0, 0, 0, 0, 0, 0, 0]), Buffer.alloc(10)]), /runs past the end/],
      ['header over the cap', Buffer.concat([Buffer.from([0, 0, 0, 0, 1, 0, 0, 0])]), /exceeds the .* cap/],
      ['bad JSON', Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{x:')]), /not valid JSON/],
      ['not an object', header([1, 2]), /not a JSON object/],
      ['unknown dtype', header({ a: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, 1), /tensor 'a': unsupported dtype "Q4"/],
      ['size mismatch', header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4), /tensor 'a': F32 \[2\] needs 8 bytes/],
      ['offsets past data', header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4), /tensor 'a': data_offsets \[0, 8\] run past/],
      ['overlap', header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /overlaps/],
      ['hole', header({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /belong to no tensor/],
      ['trailing bytes', header({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 8), /trailing bytes/],
      ['bad shape', header({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /tensor 'a': shape must be/],
      ['dtype __proto__', header({ a: { dtype: '__proto__', shape: [1], data_offsets: [0, 4] } }, 4), /tensor 'a': unsupported dtype "__proto__"/],
      ['dtype constructor', header({ a: { dtype: 'constructor', shape: [1], data_offsets: [0, 4] } }, 4), /tensor 'a': unsupported dtype "constructor"/],
    ];
    test('a directory in place of the file', () => {
      const p = join(dir, 'a_directory.safetensors');
      mkdirSync(p);
      assert.throws(() => new SafetensorsFile(p), (e: Error) => e.message.startsWith(`${p}: `) && /directory/.test(e.message));
    });
    test('a missing file', () => {
      const p = join(dir, 'missing.safetensors');
      assert.throws(() => new SafetensorsFile(p), (e: Error) => e.message.startsWith(`${p}: cannot open (ENOENT)`));
    });
    test("a tensor named '__proto__' is written and read back as an ordinary name", () => {
      const p = join(dir, 'proto.safetensors');
      k.tidy(() => saveSafetensors(p, Object.fromEntries([['__proto__', k.tensor([1, 2])], ['b', k.tensor([3])]])));
      using f = new SafetensorsFile(p);
      assert.deepEqual(f.names.sort(), ['__proto__', 'b']);
      assert.deepEqual(f.tensor('__proto__').toArray(), [1, 2]);
    });
    for (const [name, bytes, re] of cases)
      test(name, () => {
        const p = join(dir, `${name.replace(/ /g, '_')}.safetensors`);
        writeFileSync(p, bytes);
        assert.throws(() => new SafetensorsFile(p), (e: Error) => re.test(e.message) && e.message.includes(p));
      });
  });
});
