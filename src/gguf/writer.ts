// Writes a GGUF v3 file (ggml's docs/gguf.md): header, metadata key-values of every value type,
// tensor infos, then each tensor's bytes at an offset aligned to general.alignment (default 32).
// Tensor data is produced one tensor at a time (a callback), so a file bigger than memory can be
// written; the file goes to a temporary name and is renamed when complete.
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { GGML_TYPES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, type GgmlTypeName, ValueType, ggmlBytes } from './constants.js';

export type ScalarKind = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'bool' | 'string' | 'uint64' | 'int64' | 'float64';
type Scalar = number | bigint | boolean | string;

/** A metadata value with its GGUF type: a scalar, or an array of scalars or of arrays. */
export type GgufValue = { kind: ScalarKind; value: Scalar } | GgufArray;
export interface GgufArray { kind: 'array'; of: ScalarKind | 'array'; values: Scalar[] | GgufArray[] }

export interface GgufTensorSpec {
  name: string;
  type: GgmlTypeName;
  /** PyTorch order (outermost first); the file stores ggml's ne order, innermost first */
  shape: readonly number[];
  /** the tensor's bytes in `type` (encodeGgml), produced when the writer reaches it */
  data: () => Uint8Array;
}

const CODES: Record<ScalarKind | 'array', ValueType> = {
  uint8: ValueType.UINT8, int8: ValueType.INT8, uint16: ValueType.UINT16, int16: ValueType.INT16, uint32: ValueType.UINT32,
  int32: ValueType.INT32, float32: ValueType.FLOAT32, bool: ValueType.BOOL, string: ValueType.STRING, array: ValueType.ARRAY,
  uint64: ValueType.UINT64, int64: ValueType.INT64, float64: ValueType.FLOAT64,
};

/** Little-endian byte builder for the header. */
class Bytes {
  private chunks: Uint8Array[] = [];
  length = 0;
  private push(n: number, fill: (v: DataView) => void): void {
    const b = new Uint8Array(n);
    fill(new DataView(b.buffer));
    this.raw(b);
  }
  raw(b: Uint8Array): void { this.chunks.push(b); this.length += b.length; }
  u32(v: number): void { this.push(4, (d) => d.setUint32(0, v, true)); }
  u64(v: number | bigint): void { this.push(8, (d) => d.setBigUint64(0, BigInt(v), true)); }
  str(s: string): void { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.raw(b); }
  scalar(kind: ScalarKind, v: Scalar, key: string): void {
    const num = (): number => { if (typeof v !== 'number') throw new Error(`gguf: metadata '${key}' (${kind}) got ${typeof v}`); return v; };
    switch (kind) {
      case 'uint8': return this.push(1, (d) => d.setUint8(0, num()));
      case 'int8': return this.push(1, (d) => d.setInt8(0, num()));
      case 'uint16': return this.push(2, (d) => d.setUint16(0, num(), true));
      case 'int16': return this.push(2, (d) => d.setInt16(0, num(), true));
      case 'uint32': return this.push(4, (d) => d.setUint32(0, num(), true));
      case 'int32': return this.push(4, (d) => d.setInt32(0, num(), true));
      case 'float32': return this.push(4, (d) => d.setFloat32(0, num(), true));
      case 'float64': return this.push(8, (d) => d.setFloat64(0, num(), true));
      case 'uint64': return this.push(8, (d) => d.setBigUint64(0, BigInt(v as number | bigint), true));
      case 'int64': return this.push(8, (d) => d.setBigInt64(0, BigInt(v as number | bigint), true));
      case 'bool': return this.push(1, (d) => d.setUint8(0, v ? 1 : 0));
      case 'string': return this.str(String(v));
    }
  }
  value(v: GgufValue, key: string): void {
    if (v.kind !== 'array') return this.scalar(v.kind, v.value, key);
    this.u32(CODES[v.of]);
    this.u64(v.values.length);
    for (const x of v.values) {
      if (v.of === 'array') this.value(x as GgufArray, key); // an array element: its own type, count and values
      else this.scalar(v.of, x as Scalar, key);
    }
  }
  concat(): Uint8Array { return Buffer.concat(this.chunks); }
}

/** The header: magic, version, counts, metadata and tensor infos (offsets relative to the data section). */
function header(kv: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensorSpec[], alignment: number): { head: Uint8Array; offsets: number[]; dataBytes: number } {
  const b = new Bytes();
  b.u32(GGUF_MAGIC);
  b.u32(GGUF_VERSION);
  b.u64(tensors.length);
  b.u64(kv.size);
  for (const [key, v] of kv) {
    b.str(key);
    b.u32(CODES[v.kind]);
    b.value(v, key);
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    b.str(t.name);
    b.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) b.u64(d);
    b.u32(GGML_TYPES[t.type].id);
    b.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + ggmlBytes(t.type, t.shape.reduce((a, c) => a * c, 1)), alignment);
  }
  const head = b.concat();
  const padded = new Uint8Array(alignUp(head.length, alignment));
  padded.set(head);
  return { head: padded, offsets, dataBytes: offset };
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

export interface WriteGgufOptions {
  /** called after each tensor with bytes written so far and in all (a progress bar) */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Writes `path` atomically (temporary name, then rename). general.alignment, when in kv, must be a
 * uint32 power of two; otherwise 32 is used, as llama.cpp assumes.
 * @example writeGguf('m.gguf', new Map([['general.architecture', { kind: 'string', value: 'llama' }]]), tensors)
 */
export function writeGguf(path: string, kv: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensorSpec[], opts: WriteGgufOptions = {}): void {
  const a = kv.get('general.alignment');
  const alignment = a && a.kind === 'uint32' ? Number(a.value) : GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) throw new Error(`gguf: general.alignment must be a power of two, got ${alignment}`);
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`gguf: tensor '${t.name}' is written twice`);
    names.add(t.name);
  }
  const { head, offsets, dataBytes } = header(kv, tensors, alignment);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, head);
    let pos = 0;
    tensors.forEach((t, i) => {
      const bytes = t.data();
      const want = ggmlBytes(t.type, t.shape.reduce((x, y) => x * y, 1));
      if (bytes.length !== want) throw new Error(`gguf: tensor '${t.name}' (${t.type} [${t.shape.join(', ')}]) needs ${want} bytes, got ${bytes.length}`);
      if (pos < offsets[i]) writeSync(fd, new Uint8Array(offsets[i] - pos));
      writeSync(fd, bytes);
      pos = offsets[i] + bytes.length;
      opts.onProgress?.(pos, dataBytes);
    });
    if (pos < dataBytes) writeSync(fd, new Uint8Array(dataBytes - pos));
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try { closeSync(fd); } catch { /* already closed */ }
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Short constructors for the metadata values Kestrel writes. */
export const gv = {
  u32: (value: number): GgufValue => ({ kind: 'uint32', value }),
  i32: (value: number): GgufValue => ({ kind: 'int32', value }),
  f32: (value: number): GgufValue => ({ kind: 'float32', value }),
  bool: (value: boolean): GgufValue => ({ kind: 'bool', value }),
  str: (value: string): GgufValue => ({ kind: 'string', value }),
  strings: (values: string[]): GgufValue => ({ kind: 'array', of: 'string', values }),
  f32s: (values: number[]): GgufValue => ({ kind: 'array', of: 'float32', values }),
  i32s: (values: number[]): GgufValue => ({ kind: 'array', of: 'int32', values }),
};
