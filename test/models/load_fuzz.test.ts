// Fuzzing loadPretrained with seeded mutations of a tiny Llama folder (tiny_llama.ts): its
// model.safetensors (bytes of the length prefix and JSON header, edits of the header's dtypes,
// shapes, offsets and names, duplicate keys, huge numbers, truncation) and its config.json (fields
// deleted or set to strings, negatives, 0, fractions, 1e9, Infinity, garbage; bytes flipped).
// Every folder is loaded in a child process (load_fuzz_child.ts), so an abort or a hang is seen.
//
// Correct behaviour, for every mutation: either an Error whose message names the mutated file (its
// full path), or a model whose state dict equals the original's value for value. Never a signal or
// abort, a crash, a hang, or a model that loads but differs. Data bytes are never flipped: changed
// tensor values legitimately give a different model, so the data section is only truncated or
// extended (always an error). Mutations known to be invalid must be errors, not only "either":
// header edits that change a dtype, shape or offset, add, rename or drop a tensor; truncation; and
// config size fields or epsilons/rope_theta set to anything but a valid value or null.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type FuzzResult, stateDigest } from './load_fuzz_child.js';
import { joinSafetensors, saveTiny, splitSafetensors } from './tiny_llama.js';
import { childArgs } from '../child_js.js';

interface Case {
  what: string;
  file: 'model.safetensors' | 'config.json';
  bytes: Buffer;
  /** known invalid: loading must be an error */
  mustFail: boolean;
}

/** mulberry32: a small seeded PRNG, so every run makes the same mutations. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(20240917);
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T>(a: readonly T[]): T => a[int(a.length)];

type Header = Record<string, { dtype: unknown; shape: unknown; data_offsets: number[] }>;

function safetensorsCases(orig: Buffer): Case[] {
  const cases: Case[] = [];
  const add = (what: string, bytes: Buffer, mustFail: boolean): number => cases.push({ what, file: 'model.safetensors', bytes, mustFail });
  const { json, data } = splitSafetensors(orig);
  const headerEnd = 8 + Buffer.byteLength(json);

  // one byte of the length prefix or the header replaced: anywhere, or where JSON structure,
  // digits and dtype letters are (a flip there can still parse)
  const structural = [...json].flatMap((ch, i) => (/[0-9FI:,[\]{}"]/.test(ch) ? [8 + i] : []));
  for (let n = 0; n < 160; n++) {
    const b = Buffer.from(orig);
    const at = n < 100 ? int(headerEnd) : pick(structural);
    b[at] = n % 2 ? b[at] ^ (1 << int(8)) : (b[at] + 1 + int(255)) & 255;
    add(`header byte ${at} -> 0x${b[at].toString(16)}`, b, false);
  }

  const header = JSON.parse(json) as Header;
  const names = Object.keys(header).filter((n) => n !== '__metadata__');
  const edited = (what: string, edit: (h: Header, name: string) => void, mustFail = true): void => {
    const h = structuredClone(header);
    const name = pick(names);
    edit(h, name);
    add(`${what} of '${name}'`, joinSafetensors(JSON.stringify(h), data), mustFail);
  };
  for (const dtype of ['F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'U32', 'Q4', 'f32', '', 5, null, [], '__proto__', 'constructor'])
    edited(`dtype ${JSON.stringify(dtype)}`, (h, n) => void (h[n].dtype = dtype));
  const shapes: ((s: number[]) => unknown)[] = [
    (s) => [s.reduce((a, b) => a * b, 1), 1], (s) => [...s, 1], (s) => [1, ...s], (s) => s.slice(1), (s) => [-s[0], ...s.slice(1)],
    (s) => [s[0] + 0.5, ...s.slice(1)], (s) => [1e15, ...s.slice(1)], () => [2 ** 53], () => [2 ** 26, 2 ** 26], (s) => s.map(String), () => null, () => 'x', (s) => [s],
  ];
  for (const f of shapes) for (let n = 0; n < 2; n++) edited('shape edit', (h, name) => void (h[name].shape = f(h[name].shape as number[])));
  const offsets: ((o: number[]) => unknown)[] = [
    ([b, e]) => [b + 4, e + 4], ([b, e]) => [b - 4, e - 4], ([b, e]) => [b, e + 4], ([b, e]) => [b + 1, e + 1], ([b, e]) => [e, b], ([b]) => [b],
    ([b, e]) => [b, e, 0], ([b]) => [b, 1e300], ([b, e]) => [String(b), e], () => null, ([b, e]) => [b + 2 ** 53, e + 2 ** 53],
  ];
  for (const f of offsets) for (let n = 0; n < 2; n++) edited('data_offsets edit', (h, name) => void (h[name].data_offsets = f(h[name].data_offsets) as number[]));
  for (let n = 0; n < 4; n++) edited('deleted entry', (h, name) => delete h[name]);
  edited('metadata removed', (h) => delete h.__metadata__, false);
  edited('metadata value 5', (h) => void ((h as Record<string, unknown>).__metadata__ = { format: 5 }));

  // text-level edits: duplicate keys, and names an object literal would not hold
  const entry = (name: string): string => JSON.stringify(header[name]);
  const withJson = (what: string, text: string, mustFail: boolean, extra = Buffer.alloc(0)): number =>
    add(what, joinSafetensors(text, Buffer.concat([data, extra])), mustFail);
  for (let n = 0; n < 4; n++) {
    const name = pick(names);
    const moved = JSON.stringify({ ...header[name], data_offsets: header[name].data_offsets.map((o) => o + 4) });
    // JSON.parse keeps the last of duplicate keys: the original after a copy loads unchanged
    withJson(`duplicate '${name}' before it`, `{${JSON.stringify(name)}:${entry(name)},${json.slice(1)}`, false);
    withJson(`shifted duplicate '${name}' before it`, `{${JSON.stringify(name)}:${moved},${json.slice(1)}`, false);
    withJson(`shifted duplicate '${name}' after it`, `${json.trimEnd().slice(0, -1)},${JSON.stringify(name)}:${moved}}`, true);
  }
  for (const special of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '']) {
    const name = pick(names);
    withJson(`'${name}' renamed '${special}'`, json.replace(`${JSON.stringify(name)}:`, `${JSON.stringify(special)}:`), true);
    const extra = `{"${special}":{"dtype":"F32","shape":[1],"data_offsets":[${data.length},${data.length + 4}]},`;
    withJson(`extra tensor '${special}'`, extra + json.slice(1), true, Buffer.alloc(4));
  }
  withJson("extra tensor 'model.extra.weight'", `{"model.extra.weight":{"dtype":"F32","shape":[1],"data_offsets":[${data.length},${data.length + 4}]},${json.slice(1)}`, true, Buffer.alloc(4));
  for (const text of ['[]', '5', '"x"', 'null', '{}', '{"a":{"b":{"c":[[[[]]]]}}}', `${json.trimEnd().slice(0, -1)},"x":`]) withJson(`header ${text.slice(0, 20)}`, text, true);

  // the length prefix: off by one, zero, past the file, 2^64 - 1
  for (const len of [headerEnd - 8 + 1, headerEnd - 8 - 1, 0, 2 ** 40, 2n ** 64n - 1n]) {
    const b = Buffer.from(orig);
    b.writeBigUInt64LE(BigInt(len));
    add(`length prefix ${len}`, b, true);
  }
  // truncation anywhere (the header, or the data) and trailing bytes
  for (let n = 0; n < 30; n++) {
    const at = n < 10 ? int(headerEnd) : headerEnd + int(orig.length - headerEnd);
    add(`truncated to ${at} bytes`, orig.subarray(0, at), true);
  }
  for (const extra of [1, 4, 100]) add(`${extra} bytes appended`, Buffer.concat([orig, Buffer.alloc(extra, 7)]), true);
  return cases;
}

/** JSON texts for config values: out of range, wrong types, Infinity (1e999 parses to it), garbage. */
const VALUES = ['-1', '0', '0.5', '1.5', '-16', '1e9', '1e300', '1e999', '-1e999', '1e-300', '"16"', '"abc"', '"NaN"', 'null', 'true', 'false', '[]', '[16]', '{}', '{"a":{"b":[1,{"c":null}]}}'];
/** Fields that must be errors for every VALUE but null (null reads as absent: a default, or missing). */
const SIZES = ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'max_position_embeddings'];
const POSITIVE = ['rms_norm_eps', 'rope_theta'];

function configCases(text: string): Case[] {
  const cfg = JSON.parse(text) as Record<string, unknown>;
  const cases: Case[] = [];
  // latin1: one byte per char, so the flipped bytes below are written as they are
  const add = (what: string, text: string, mustFail: boolean): number => cases.push({ what, file: 'config.json', bytes: Buffer.from(text, 'latin1'), mustFail });
  const withValue = (field: string, value: string): string => JSON.stringify({ ...cfg, [field]: '@@VALUE@@' }).replace('"@@VALUE@@"', value);
  const invalid = (field: string, value: string): boolean => {
    if (value === 'null') return false;
    const v: unknown = JSON.parse(value);
    if (SIZES.includes(field)) return true; // TINY's own sizes are not among VALUES
    return POSITIVE.includes(field) && !(typeof v === 'number' && Number.isFinite(v) && v > 0);
  };
  for (const field of [...SIZES, ...POSITIVE]) for (const value of VALUES) add(`${field}: ${value}`, withValue(field, value), invalid(field, value));
  for (const field of Object.keys(cfg).filter((f) => !SIZES.includes(f) && !POSITIVE.includes(f)))
    for (let n = 0; n < 4; n++) {
      const value = pick(VALUES);
      add(`${field}: ${value}`, withValue(field, value), false);
    }
  for (const field of Object.keys(cfg)) {
    const { [field]: _, ...rest } = cfg;
    add(`${field} deleted`, JSON.stringify(rest), false);
  }
  const absurd: [string, string][] = [['num_hidden_layers', '1e9'], ['hidden_size', '1e12'], ['vocab_size', '1e15'], ['intermediate_size', '1e9'], ['head_dim', '1e9'], ['num_key_value_heads', '3'], ['head_dim', '3'], ['hidden_size', '18']];
  for (const [field, value] of absurd) add(`${field}: ${value}`, withValue(field, value), true);
  const rope: [string, boolean][] = [
    ['{"rope_type":"linear"}', true], ['{"type":"linear","factor":0}', true], ['{"rope_type":"dynamic","factor":-2}', true],
    ['{"rope_type":"llama3","factor":8}', true], ['{"rope_type":"longrope","short_factor":[1],"long_factor":[1]}', true], ['{"rope_type":5}', true],
    ['{"rope_type":"weird"}', true], ['{"rope_type":"yarn","factor":2}', false], ['{"rope_type":"linear","factor":2}', false], ['{"a":{"b":[]}}', false],
  ];
  for (const [value, mustFail] of rope) add(`rope_scaling: ${value}`, withValue('rope_scaling', value), mustFail);
  const { hidden_size: _, ...noHidden } = cfg;
  add('hidden_size only under "__proto__"', `{"__proto__":{"hidden_size":16},${JSON.stringify(noHidden).slice(1)}`, true);
  for (const t of ['[]', '5', 'null', '"llama"', 'NaN', '{"model_type":"llama",}', '']) add(`config.json is ${t || 'empty'}`, t, true);
  // bytes flipped (a different valid value, e.g. rope_theta 10001, still loads the same weights)
  for (let n = 0; n < 40; n++) {
    const b = Buffer.from(text);
    const at = int(b.length);
    b[at] = (b[at] + 1 + int(255)) & 255;
    add(`config byte ${at} -> 0x${b[at].toString(16)}`, b.toString('latin1'), false);
  }
  for (let n = 0; n < 6; n++) {
    const at = int(text.length);
    add(`config truncated to ${at} chars`, text.slice(0, at), true);
  }
  return cases;
}

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'load_fuzz_child.ts');

/** Loads each case's folder in one child; the results by case index, and the child's exit. */
function runBatch(listFile: string): { results: Map<number, FuzzResult>; status: number | null; signal: string | null; stderr: string } {
  const r = spawnSync(process.execPath, childArgs(CHILD), { env: { ...process.env, LOAD_FUZZ_LIST: listFile }, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 });
  const results = new Map<number, FuzzResult>();
  for (const line of r.stdout.split('\n')) if (line.startsWith('{')) {
    const res = JSON.parse(line) as FuzzResult;
    results.set(res.i, res);
  }
  return { results, status: r.status, signal: r.signal, stderr: r.stderr };
}

test('loadPretrained on a few hundred corrupt folders: a named error or the identical model, never a crash', { timeout: 300_000 }, (t) => {
  const root = mkdtempSync(join(tmpdir(), 'kestrel-fuzz-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const original = join(root, 'original');
  const model = saveTiny(original, 7);
  const want = stateDigest(model);
  model.dispose();
  const st = readFileSync(join(original, 'model.safetensors'));
  const config = readFileSync(join(original, 'config.json'));
  const cases: Case[] = [
    { what: 'unchanged', file: 'config.json', bytes: config, mustFail: false },
    ...safetensorsCases(st),
    ...configCases(config.toString('latin1')),
  ];
  const dirs = cases.map((c, i) => {
    const dir = join(root, `case-${i}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'model.safetensors'), c.file === 'model.safetensors' ? c.bytes : st);
    writeFileSync(join(dir, 'config.json'), c.file === 'config.json' ? c.bytes : config);
    return dir;
  });

  // a few children, each loading its share of the folders in turn
  const [crashes, problems]: string[][] = [[], []];
  let [errors, identical] = [0, 0];
  const CHILDREN = 3;
  for (let b = 0; b < CHILDREN; b++) {
    const mine = dirs.flatMap((d, i) => (i % CHILDREN === b ? [i] : []));
    const list = join(root, `batch-${b}.json`);
    writeFileSync(list, JSON.stringify(mine.map((i) => dirs[i])));
    const run = runBatch(list);
    if (run.status !== 0 || run.signal)
      crashes.push(`child ${b} exited with status ${run.status}, signal ${run.signal}: ${run.stderr.slice(-1500)}`);
    mine.forEach((caseIdx, j) => {
      const c = cases[caseIdx];
      const r = run.results.get(j);
      const label = `case ${caseIdx} (${c.file}: ${c.what})`;
      const path = join(dirs[caseIdx], c.file);
      if (!r) crashes.push(`${label}: no result (the child died or hung at the first case without one)`);
      else if (r.error !== undefined) {
        errors++;
        if (!r.isError) problems.push(`${label}: threw a non-Error: ${r.error}`);
        else if (!r.error.includes(path)) problems.push(`${label}: the error does not name ${path}: ${r.error}`);
      } else {
        identical++;
        if (c.mustFail) problems.push(`${label}: loaded, but it must be an error`);
        else if (r.digest !== want) problems.push(`${label}: loaded a different model`);
      }
    });
  }
  assert.deepEqual(crashes.slice(0, 4), [], 'a child crashed or hung');
  assert.deepEqual(problems.slice(0, 30), [], `${problems.length} of ${cases.length} mutations misbehaved`);
  // both outcomes occur, so neither check above is vacuous
  assert.ok(errors > cases.length / 2 && identical > 10, `${errors} errors, ${identical} identical models of ${cases.length}`);
});
