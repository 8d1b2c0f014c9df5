// safetensors (huggingface/safetensors): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, __metadata__?}, then the data. Read lazily by name with
// ranged reads; validated strictly (the buffer must be indexed entirely, without holes or
// overlaps); written to a temporary name and renamed, so a crash never leaves a torn file.
import { closeSync, fstatSync, fsyncSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import type { DType, TypedArray } from '../tensor/dtype.js';
import type { MemoryTag } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import { empty } from '../ops/dispatch.js';
import { toTypedArray } from '../ops/transfer.js';
import { readFully } from '../backend/read_file.js';
import { readArray, readTensorInto } from './read_into.js';
import { ST_DTYPES, TO_ST } from './safetensors_dtypes.js';

/** Header size cap (the reference implementation's limit). */
const MAX_HEADER = 100_000_000;

export interface TensorInfo {
  readonly name: string;
  /** the dtype as stored in the file (F32, BF16, ...) */
  readonly fileDtype: string;
  /** the dtype it loads as */
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** absolute byte range in the file */
  readonly begin: number;
  readonly end: number;
}

/** An open safetensors file: the header is parsed and checked; tensors are read on demand. */
export class SafetensorsFile {
  readonly metadata: Record<string, string>;
  private readonly infos = new Map<string, TensorInfo>();
  private fd: number | null;

  constructor(readonly path: string) {
    this.fd = openFile(path);
    try {
      const { metadata, infos } = parseHeader(path, this.fd, fstatSync(this.fd).size);
      this.metadata = metadata;
      for (const i of infos) this.infos.set(i.name, i);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  get names(): string[] {
    return [...this.infos.keys()];
  }

  info(name: string): TensorInfo {
    const i = this.infos.get(name);
    if (!i) throw new Error(`${this.path}: no tensor named '${name}'`);
    return i;
  }

  has(name: string): boolean {
    return this.infos.has(name);
  }

  private openFd(): number {
    if (this.fd === null) throw new Error(`${this.path}: file is closed`);
    return this.fd;
  }

  /** The raw bytes of one tensor (a ranged read; nothing else is loaded). */
  readBytes(name: string): Uint8Array {
    const { begin, end } = this.info(name);
    return readExactly(this.openFd(), end - begin, begin, `${this.path}: reading '${name}'`);
  }

  /**
   * One tensor's elements in the storage representation of the dtype it loads as, read straight
   * into a new typed array, or into `out` (that dtype's array of numel elements) to reuse one.
   * @example const absmax = file.readArray('model.layers.0.mlp.up_proj.weight.absmax') as Float32Array
   */
  readArray(name: string, out?: TypedArray): TypedArray {
    const info = this.info(name);
    const fd = this.openFd();
    try {
      return readArray(fd, info, { out });
    } catch (e) {
      throw new Error(`${this.path}: reading '${name}': ${(e as Error).message}`);
    }
  }

  /**
   * Reads one tensor into an existing tensor of the same element count, in dst's dtype: straight
   * into its storage when the dtypes match, else converted a few MiB at a time (io/read_into.ts).
   * @example file.readInto('model.norm.weight', model.model.norm.weight)
   */
  readInto(name: string, dst: Tensor): void {
    readTensorInto(this.openFd(), this.info(name), dst, `${this.path}: tensor '${name}'`);
  }

  /** Loads one tensor onto a backend (allocated in its load dtype, then filled by readInto: one copy). */
  tensor(name: string, opts: { backend?: string; tag?: MemoryTag } = {}): Tensor {
    const info = this.info(name);
    const t = empty([...info.shape], info.dtype, { backend: opts.backend, tag: opts.tag });
    try {
      this.readInto(name, t);
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Opens a regular file for reading; a missing file, a directory or a device is an error naming the path. */
function openFile(path: string): number {
  const failed = (e: unknown): Error => new Error(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw failed(e);
  }
  // a directory opens and then fails on read with a bare EISDIR; opening a FIFO would block
  if (!st.isFile()) throw new Error(`${path}: not a safetensors file (it is a ${st.isDirectory() ? 'directory' : 'special file'})`);
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw failed(e);
  }
}

/** length bytes at position; a short file is an error naming what was being read. */
function readExactly(fd: number, length: number, position: number, what: string): Buffer {
  const buf = Buffer.allocUnsafe(length); // every byte is overwritten, or the read throws
  try {
    readFully(fd, buf, position);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
  return buf;
}

function parseHeader(path: string, fd: number, size: number): { metadata: Record<string, string>; infos: TensorInfo[] } {
  const bad = (why: string): never => {
    throw new Error(`${path}: invalid safetensors file: ${why}`);
  };
  if (size < 8) bad(`file is ${size} bytes, shorter than the 8-byte header length`);
  const n = Number(readExactly(fd, 8, 0, path).readBigUInt64LE(0));
  if (n > MAX_HEADER) bad(`header length ${n} exceeds the ${MAX_HEADER}-byte cap`);
  if (8 + n > size) bad(`header length ${n} runs past the end of the ${size}-byte file`);
  let header: unknown;
  try {
    header = JSON.parse(readExactly(fd, n, 8, path).toString('utf8'));
  } catch (e) {
    bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('header is not a JSON object');
  const dataStart = 8 + n;
  const dataLength = size - dataStart;
  const metadata: Record<string, string> = {};
  const infos: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null) bad('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') bad(`__metadata__.${k} must be a string`);
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true }); // '__proto__' too
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `tensor '${name}'`;
    if (typeof e !== 'object' || e === null) bad(`${where}: entry is not an object`);
    // own keys only: a dtype named 'constructor' or '__proto__' must not find Object.prototype's
    const st = typeof e.dtype === 'string' && Object.hasOwn(ST_DTYPES, e.dtype) ? ST_DTYPES[e.dtype] : undefined;
    if (!st) bad(`${where}: unsupported dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`${where}: shape must be a list of non-negative integers`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1])
      bad(`${where}: data_offsets must be [begin, end] with 0 <= begin <= end`);
    const [b, en] = offs as number[];
    const shape = e.shape as number[];
    const want = shape.reduce((a, d) => a * d, 1) * st!.bytes;
    if (en - b !== want) bad(`${where}: ${e.dtype} ${JSON.stringify(shape)} needs ${want} bytes, data_offsets give ${en - b}`);
    if (en > dataLength) bad(`${where}: data_offsets [${b}, ${en}] run past the ${dataLength}-byte data section`);
    infos.push({ name, fileDtype: e.dtype as string, dtype: st!.dtype, shape, begin: dataStart + b, end: dataStart + en });
  }
  // the data section must be indexed entirely, with no overlap and no hole
  const sorted = [...infos].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = dataStart;
  for (const i of sorted) {
    if (i.begin < at) bad(`tensor '${i.name}' overlaps the tensor before it`);
    if (i.begin > at) bad(`bytes ${at - dataStart}..${i.begin - dataStart} of the data section belong to no tensor`);
    at = i.end;
  }
  if (at !== size) bad(`the data section has ${size - at} trailing bytes that belong to no tensor`);
  return { metadata, infos };
}

// the reference serializer's order: dtype descending (I64 > F64 > F32 > I32 > BF16 > F16 > ... > BOOL), then name
const DTYPE_ORDER = ['I64', 'F64', 'F32', 'I32', 'BF16', 'F16', 'I16', 'I8', 'U8', 'BOOL'];

/**
 * Writes tensors (and string metadata) as one safetensors file, atomically: the bytes go to
 * `path.tmp-<pid>`, are fsynced, then renamed over path.
 * @example saveSafetensors('model.safetensors', model.stateDict(), { format: 'pt' })
 */
export function saveSafetensors(path: string, tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): void {
  const names = Object.keys(tensors).sort((a, b) => {
    const [da, db] = [TO_ST[tensors[a].dtype], TO_ST[tensors[b].dtype]];
    return DTYPE_ORDER.indexOf(da) - DTYPE_ORDER.indexOf(db) || (a < b ? -1 : a > b ? 1 : 0);
  });
  // no prototype: a tensor named '__proto__' is then an ordinary key that JSON.stringify writes
  const header: Record<string, unknown> = Object.create(null);
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const blobs: Uint8Array[] = [];
  for (const name of names) {
    const t = tensors[name];
    const data = toTypedArray(t);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    header[name] = { dtype: TO_ST[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    blobs.push(bytes);
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const part of [len, json, ...blobs]) {
      let done = 0;
      while (done < part.length) done += writeSync(fd, part, done, part.length - done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

