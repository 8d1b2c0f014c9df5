// A Hugging Face model folder: config.json plus model.safetensors or sharded
// model-0000X-of-0000N.safetensors listed in model.safetensors.index.json. Tensors are read by
// name from whichever shard holds them; writing goes file by file through a temporary name. The
// index may only name files inside the folder.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, win32 } from 'node:path';
import type { TypedArray } from '../tensor/dtype.js';
import type { MemoryTag } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import { SafetensorsFile, type TensorInfo, saveSafetensors } from './safetensors.js';

export type Json = Record<string, unknown>;

/** Parses a JSON file; errors name the file. */
export function readJson(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${path}: expected a JSON object`);
  return v as Json;
}

/** Writes JSON through a temporary file and a rename, so a crash never leaves half a file. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  renameSync(tmp, path);
}

export class CheckpointFolder {
  readonly config: Json;
  /** the file that lists the tensors: model.safetensors.index.json, or model.safetensors itself */
  readonly source: string;
  private readonly files = new Map<string, SafetensorsFile>();
  private readonly where = new Map<string, SafetensorsFile>();

  constructor(readonly dir: string) {
    if (!existsSync(dir)) throw new Error(`${dir}: model folder not found`);
    this.config = readJson(join(dir, 'config.json'));
    const index = join(dir, 'model.safetensors.index.json');
    const single = join(dir, 'model.safetensors');
    this.source = existsSync(index) ? index : single;
    try {
      if (existsSync(index)) {
        const map = readJson(index).weight_map;
        if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${index}: missing object 'weight_map'`);
        for (const [name, file] of Object.entries(map as Record<string, unknown>)) this.where.set(name, this.open(shardPath(dir, index, name, file)));
        for (const [name, f] of this.where)
          if (!f.has(name)) throw new Error(`${index}: '${name}' is mapped to ${f.path}, which does not contain it`);
      } else if (existsSync(single)) {
        const f = this.open(single);
        for (const name of f.names) this.where.set(name, f);
      } else if (existsSync(join(dir, 'pytorch_model.bin'))) {
        throw new Error(`${dir}: only pytorch_model.bin found; convert it to safetensors (Kestrel reads safetensors only)`);
      } else throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
    } catch (e) {
      this.close(); // the shards opened before the failure
      throw e;
    }
  }

  private open(path: string): SafetensorsFile {
    let f = this.files.get(path);
    if (!f) {
      f = new SafetensorsFile(path);
      this.files.set(path, f);
    }
    return f;
  }

  get names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** The path of the safetensors file that holds tensor `name`. */
  file(name: string): string {
    return this.shard(name).path;
  }

  info(name: string): TensorInfo {
    return this.shard(name).info(name);
  }

  tensor(name: string, opts: { backend?: string; tag?: MemoryTag } = {}): Tensor {
    return this.shard(name).tensor(name, opts);
  }

  /** Tensor `name`'s elements in its load dtype's storage representation (SafetensorsFile.readArray). */
  readArray(name: string, out?: TypedArray): TypedArray {
    return this.shard(name).readArray(name, out);
  }

  /**
   * Reads tensor `name` into dst (same element count, dst's dtype) with no whole-tensor copy (SafetensorsFile.readInto).
   * @example folder.readInto('lm_head.weight', model.lm_head.weight)
   */
  readInto(name: string, dst: Tensor): void {
    this.shard(name).readInto(name, dst);
  }

  private shard(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new Error(`${this.dir}: checkpoint has no tensor '${name}'`);
    return f;
  }

  close(): void {
    for (const f of this.files.values()) f.close();
  }
}

/**
 * The shard a weight_map entry names, which must be a file inside the model folder: an absolute path
 * or a '..' step could make a downloaded index read any file on the machine.
 */
function shardPath(dir: string, index: string, name: string, file: unknown): string {
  const entry = `weight_map[${JSON.stringify(name)}] = ${JSON.stringify(file)}`;
  if (typeof file !== 'string' || file === '') throw new Error(`${index}: ${entry} must be a file name`);
  if (isAbsolute(file) || win32.isAbsolute(file) || file.split(/[\\/]/).includes('..'))
    throw new Error(`${index}: ${entry} names a file outside the model folder ${dir}`);
  const path = join(dir, file);
  if (!existsSync(path)) throw new Error(`${index}: ${entry}: shard ${path} does not exist`);
  return path;
}

/** Writes config.json (+ generation_config.json) and model.safetensors into dir. */
export function saveCheckpointFolder(dir: string, files: { config: Json; generationConfig?: Json | null; tensors: Record<string, Tensor> }): void {
  mkdirSync(dir, { recursive: true });
  saveSafetensors(join(dir, 'model.safetensors'), files.tensors, { format: 'pt' });
  writeJsonAtomic(join(dir, 'config.json'), files.config);
  if (files.generationConfig) writeJsonAtomic(join(dir, 'generation_config.json'), files.generationConfig);
}
