// Reads a GGUF file (v2 and v3, ggml's docs/gguf.md): the metadata, the tensor infos and, on
// demand, one tensor's bytes. Kestrel's own reader (no runtime dependency): every count, length,
// shape and offset is checked against the file before use, and errors name the file and the key
// or tensor. The header is read in growing chunks, so a large vocabulary costs no whole-file read.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, type GgmlTypeName, ValueType, ggmlBytes, ggmlTypeName } from './constants.js';

export type GgufJs = number | bigint | boolean | string | GgufJs[];

export interface GgufTensorInfo {
  name: string;
  type: GgmlTypeName;
  /** PyTorch order (outermost first), the reverse of the file's ne */
  shape: number[];
  /** absolute byte offset in the file */
  begin: number;
  bytes: number;
}

/** A cursor over the file that reads more of it as parsing needs. */
class Cursor {
  private buf = Buffer.alloc(0);
  private start = 0;
  pos = 0;
  constructor(private readonly fd: number, readonly size: number, private readonly file: string) {}
  private need(n: number, what: string): void {
    if (this.pos + n > this.size) throw new Error(`${this.file}: truncated: ${what} needs ${n} bytes at offset ${this.pos}, the file has ${this.size}`);
    if (this.pos + n <= this.start + this.buf.length) return;
    const len = Math.min(this.size - this.pos, Math.max(n, 1 << 20, this.buf.length * 2));
    this.buf = Buffer.alloc(len);
    readSync(this.fd, this.buf, 0, len, this.pos);
    this.start = this.pos;
  }
  private take(n: number, what: string): number {
    this.need(n, what);
    const at = this.pos - this.start;
    this.pos += n;
    return at;
  }
  u8(w: string): number { const at = this.take(1, w); return this.buf.readUInt8(at); }
  i8(w: string): number { const at = this.take(1, w); return this.buf.readInt8(at); }
  u16(w: string): number { const at = this.take(2, w); return this.buf.readUInt16LE(at); }
  i16(w: string): number { const at = this.take(2, w); return this.buf.readInt16LE(at); }
  u32(w: string): number { const at = this.take(4, w); return this.buf.readUInt32LE(at); }
  i32(w: string): number { const at = this.take(4, w); return this.buf.readInt32LE(at); }
  f32(w: string): number { const at = this.take(4, w); return this.buf.readFloatLE(at); }
  f64(w: string): number { const at = this.take(8, w); return this.buf.readDoubleLE(at); }
  i64(w: string): bigint { const at = this.take(8, w); return this.buf.readBigInt64LE(at); }
  u64(w: string): bigint { const at = this.take(8, w); return this.buf.readBigUInt64LE(at); }
  /** a u64 that must be a count below `max` (what it counts names the error) */
  count(w: string, max: number): number {
    const v = this.u64(w);
    if (v > BigInt(max)) throw new Error(`${this.file}: ${w} is ${v}, more than the file can hold (${max})`);
    return Number(v);
  }
  str(w: string): string {
    const n = this.count(`the length of ${w}`, this.size - this.pos);
    const at = this.take(n, w);
    return this.buf.toString('utf8', at, at + n);
  }
}

function readValue(c: Cursor, type: number, key: string, depth = 0): GgufJs {
  const w = `metadata '${key}'`;
  switch (type) {
    case ValueType.UINT8: return c.u8(w);
    case ValueType.INT8: return c.i8(w);
    case ValueType.UINT16: return c.u16(w);
    case ValueType.INT16: return c.i16(w);
    case ValueType.UINT32: return c.u32(w);
    case ValueType.INT32: return c.i32(w);
    case ValueType.FLOAT32: return c.f32(w);
    case ValueType.FLOAT64: return c.f64(w);
    case ValueType.BOOL: return c.u8(w) !== 0;
    case ValueType.STRING: return c.str(w);
    case ValueType.UINT64: { const v = c.u64(w); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case ValueType.INT64: { const v = c.i64(w); return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case ValueType.ARRAY: {
      if (depth > 8) throw new Error(`metadata '${key}': arrays nested deeper than 8`);
      const of = c.u32(w);
      const n = c.count(`the length of ${w}`, c.size - c.pos);
      return Array.from({ length: n }, () => readValue(c, of, key, depth + 1));
    }
    default: throw new Error(`metadata '${key}' has unknown value type ${type}`);
  }
}

export class GgufFile {
  readonly version: number;
  readonly metadata = new Map<string, GgufJs>();
  readonly tensors = new Map<string, GgufTensorInfo>();
  private fd: number | null;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
    try {
      const size = fstatSync(this.fd).size;
      const c = new Cursor(this.fd, size, path);
      if (size < 4 || c.u32('the magic') !== GGUF_MAGIC) throw new Error(`${path}: not a GGUF file (no 'GGUF' magic)`);
      this.version = c.u32('the version');
      if (this.version !== 2 && this.version !== 3) throw new Error(`${path}: GGUF version ${this.version} is not supported (2 and 3 are)`);
      const nTensors = c.count('the tensor count', size), nKv = c.count('the metadata count', size);
      for (let i = 0; i < nKv; i++) {
        const key = c.str(`metadata key ${i}`);
        try {
          this.metadata.set(key, readValue(c, c.u32(`the type of '${key}'`), key));
        } catch (e) {
          throw new Error((e as Error).message.startsWith(path) ? (e as Error).message : `${path}: ${(e as Error).message}`);
        }
      }
      const infos: { name: string; type: GgmlTypeName; shape: number[]; offset: number }[] = [];
      for (let i = 0; i < nTensors; i++) {
        const name = c.str(`tensor name ${i}`);
        const nd = c.u32(`the dimension count of '${name}'`);
        if (nd < 1 || nd > 4) throw new Error(`${path}: tensor '${name}' has ${nd} dimensions (1 to 4 are allowed)`);
        const ne = Array.from({ length: nd }, (_, d) => c.count(`dimension ${d} of '${name}'`, 2 ** 40));
        const id = c.u32(`the type of '${name}'`);
        const type = ggmlTypeName(id);
        if (!type) throw new Error(`${path}: tensor '${name}' has ggml type ${id}, which Kestrel does not read (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)`);
        infos.push({ name, type, shape: ne.reverse(), offset: c.count(`the offset of '${name}'`, size) });
      }
      const a = this.metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT;
      if (typeof a !== 'number' || a <= 0 || (a & (a - 1)) !== 0) throw new Error(`${path}: general.alignment ${String(a)} is not a power of two`);
      const dataStart = Math.ceil(c.pos / a) * a;
      for (const t of infos) {
        const n = t.shape.reduce((x, y) => x * y, 1);
        const bytes = ggmlBytes(t.type, n);
        const begin = dataStart + t.offset;
        if (t.offset % a !== 0 || begin + bytes > size) throw new Error(`${path}: tensor '${t.name}' (${t.type} [${t.shape.join(', ')}], ${bytes} bytes at data offset ${t.offset}) is misaligned or runs past the end of the file (${size} bytes)`);
        if (this.tensors.has(t.name)) throw new Error(`${path}: tensor '${t.name}' appears twice`);
        this.tensors.set(t.name, { name: t.name, type: t.type, shape: t.shape, begin, bytes });
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** The metadata value of key, checked to be of `kind`; `fallback` when absent (else an error). */
  get<T extends 'number' | 'string' | 'boolean'>(key: string, kind: T, fallback?: T extends 'number' ? number : T extends 'string' ? string : boolean): T extends 'number' ? number : T extends 'string' ? string : boolean {
    const v = this.metadata.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new Error(`${this.path}: metadata '${key}' is missing`);
    }
    if (typeof v !== kind) throw new Error(`${this.path}: metadata '${key}' should be a ${kind}, got ${JSON.stringify(typeof v === 'bigint' ? String(v) : v)?.slice(0, 80)}`);
    return v as never;
  }

  /** The stored bytes of tensor `name` (in its ggml type). */
  readBytes(name: string): Uint8Array {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor '${name}'`);
    if (this.fd === null) throw new Error(`${this.path}: file is closed`);
    const out = new Uint8Array(t.bytes);
    readSync(this.fd, out, 0, t.bytes, t.begin);
    return out;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
