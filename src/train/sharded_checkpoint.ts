// Sharded checkpoints for ZeRO (stages 1-3; DeepSpeed's zero_pp_rank_*_optim_states files plus
// the "universal checkpoint" idea built in): every rank writes its own optimizer shard (float32
// master weights and each optimizer state) with the pieces of named parameters it holds; rank 0
// adds the model, the trainer state and zero_manifest.json (world size, stage, every tensor's shape
// and dtype, every rank's layout). All of it goes into one temporary folder renamed once complete,
// so a crash mid-save leaves the last good checkpoint. Because the layout names parameter ranges,
// a resume reassembles whatever its own layout needs (any world size, any stage, or one process)
// by reading the saved shards one at a time; a plain checkpoint reads as shards of whole parameters.
// At stage 3 the layers' parameters exist only in the shards (rank 0's model file lacks them).
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readJson, writeJsonAtomic } from '../io/hf_folder.js';
import { SafetensorsFile, saveSafetensors } from '../io/safetensors.js';
import { backendOf } from '../backend/index.js';
import { tensor } from '../ops/creation.js';
import type { Optimizer } from '../optim/optimizer.js';
import { defaultGenerator } from '../tensor/rng.js';
import type { Tensor } from '../tensor/tensor.js';
import { type TrainerState, listCheckpoints } from './checkpoint.js';
import type { DataParallel, ShardLayout } from './data_parallel.js';

export const ZERO_MANIFEST = 'zero_manifest.json';

/** Elements [start, start + length) of the named parameter sit at [at, at + length) of a shard. */
export interface NamedPiece {
  name: string;
  start: number;
  length: number;
  at: number;
}

interface SavedGroup {
  length: number;
  /** optimizer state names saved beside the master weights ('exp_avg', ...) */
  keys: string[];
  pieces: NamedPiece[];
}

export interface ZeroManifest {
  format: 'kestrel-zero';
  world_size: number;
  stage: number;
  tensors: Record<string, { shape: number[]; dtype: string }>;
  ranks: { file: string; rng: { seed: number; counter: number }; groups: SavedGroup[] }[];
}

export const isSharded = (dir: string): boolean => existsSync(join(dir, ZERO_MANIFEST));

export interface ShardedSave {
  outputDir: string;
  dp: DataParallel;
  layout: ShardLayout;
  /** every trainable parameter's name */
  names: Map<Tensor, string>;
  optimizer: Optimizer<{ lr: number }>;
  /** what rank 0 saves of the model (the trainer's checkpointed state) */
  model: () => Record<string, Tensor>;
  state: TrainerState;
  keepLast: number;
}

/** Every rank calls this together; resolves with the checkpoint folder once it is complete. */
export async function saveShardedCheckpoint(o: ShardedSave): Promise<string> {
  const { dp, layout, state } = o;
  const barrier = async (): Promise<void> => void (await dp.sum([0]));
  // one temporary folder for every rank, named by rank 0's pid (removeStaleTemps knows the pattern)
  const [pid0] = await dp.sum([dp.rank === 0 ? process.pid : 0]);
  const final = join(o.outputDir, `checkpoint-${state.step}`);
  const tmp = `${final}.tmp-${pid0}`;
  if (dp.rank === 0) {
    mkdirSync(o.outputDir, { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
  }
  await barrier();
  const sd = o.optimizer.stateDict();
  const owned = o.optimizer.groups.flatMap((g) => g.params);
  const files: Record<string, Tensor> = {};
  const groups: SavedGroup[] = layout.groups.map((g, gi) => {
    if (owned[gi] !== g.shard) throw new Error(`sharded checkpoint: the optimizer's parameter ${gi} is not ZeRO's shard ${gi} (build the optimizer over shardGroups)`);
    files[`${gi}.master`] = g.shard;
    const keys = Object.keys(sd.state[gi]);
    for (const k of keys) files[`${gi}.${k}`] = sd.state[gi][k];
    const pieces = g.pieces.map((p) => ({ name: nameOf(o.names, p.param), start: p.start, length: p.length, at: p.at }));
    return { length: g.shard.numel, keys, pieces };
  });
  const file = `optimizer-rank${dp.rank}.safetensors`;
  saveSafetensors(join(tmp, file), files);
  writeJsonAtomic(join(tmp, `rank-${dp.rank}.json`), { file, rng: defaultGenerator.getState(), groups });
  if (dp.rank === 0) {
    saveSafetensors(join(tmp, 'model.safetensors'), o.model(), { format: 'pt' });
    writeJsonAtomic(join(tmp, 'trainer_state.json'), state);
  }
  await barrier();
  if (dp.rank === 0) {
    const ranks = Array.from({ length: dp.worldSize }, (_, r) => readJson(join(tmp, `rank-${r}.json`)) as unknown as ZeroManifest['ranks'][number]);
    const tensors = Object.fromEntries([...o.names].map(([t, n]) => [n, { shape: [...t.shape], dtype: t.dtype }]));
    const manifest: ZeroManifest = { format: 'kestrel-zero', world_size: dp.worldSize, stage: layout.stage, tensors, ranks };
    writeJsonAtomic(join(tmp, ZERO_MANIFEST), manifest);
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
    if (o.keepLast > 0) for (const old of listCheckpoints(o.outputDir).slice(0, -o.keepLast)) rmSync(old.path, { recursive: true, force: true });
  }
  await barrier(); // no rank goes on (or resumes from it) before the folder is in place
  return final;
}

function nameOf(names: Map<Tensor, string>, p: Tensor): string {
  const n = names.get(p);
  if (n === undefined) throw new Error(`sharded checkpoint: a shard holds a parameter that is not among the model's trainable parameters (shape [${p.shape.join(', ')}])`);
  return n;
}

/** Reads and checks zero_manifest.json. */
export function readManifest(dir: string): ZeroManifest {
  const file = join(dir, ZERO_MANIFEST);
  const m = readJson(file) as unknown as ZeroManifest;
  if (m.format !== 'kestrel-zero') throw new Error(`${file}: field 'format' must be 'kestrel-zero', got ${JSON.stringify(m.format)}`);
  if (!Number.isInteger(m.world_size) || m.world_size < 1) throw new Error(`${file}: field 'world_size' must be a positive integer`);
  if (!Array.isArray(m.ranks) || m.ranks.length !== m.world_size) throw new Error(`${file}: 'ranks' must list ${m.world_size} ranks, got ${Array.isArray(m.ranks) ? m.ranks.length : typeof m.ranks}`);
  if (typeof m.tensors !== 'object' || m.tensors === null) throw new Error(`${file}: field 'tensors' must be an object`);
  for (const [r, rank] of m.ranks.entries()) if (!existsSync(join(dir, rank.file))) throw new Error(`${dir}: rank ${r}'s shard ${rank.file} is missing`);
  return m;
}

/** One flat vector to fill (an optimizer shard of this run, or a whole parameter): its length and the named pieces in it. */
export interface ShardTarget {
  length: number;
  pieces: NamedPiece[];
}

/** For each target: the master weights and each optimizer state, from the saved shards. */
export type ShardValues = { master: Float32Array; state: Record<string, Float32Array> };

/** One saved flat vector: the named pieces it holds, its state names, and how to read it ('master' or a state). */
export interface SavedShard {
  pieces: NamedPiece[];
  keys: string[];
  read(key: string): Float32Array;
}

/** The shards of a sharded checkpoint, each rank's file open only while its groups are read. */
export function* manifestShards(dir: string, m: ZeroManifest): Generator<SavedShard> {
  for (const rank of m.ranks) {
    const f = new SafetensorsFile(join(dir, rank.file));
    try {
      for (const [gi, g] of rank.groups.entries()) yield { pieces: g.pieces, keys: g.keys, read: (key) => readFloat32(f, `${gi}.${key}`) };
    } finally {
      f.close();
    }
  }
}

/**
 * A plain checkpoint (one process or ZeRO-0: optimizer.safetensors with '<i>.<state>' per
 * parameter, in the optimizer's parameter order) as shards of whole parameters; `names[i]` is the
 * i-th parameter's name in that order, and the masters are the model's own tensors.
 */
export function* plainShards(dir: string, names: readonly string[]): Generator<SavedShard> {
  const opt = new SafetensorsFile(join(dir, 'optimizer.safetensors'));
  const model = new SafetensorsFile(join(dir, 'model.safetensors'));
  try {
    const keysOf = (i: number): string[] => opt.names.filter((n) => n.startsWith(`${i}.`)).map((n) => n.slice(`${i}.`.length));
    for (const [i, name] of names.entries()) {
      if (!model.has(name)) throw new Error(`${dir}: model.safetensors has no tensor '${name}' (parameter ${i} of this run)`);
      const numel = model.info(name).shape.reduce((a, b) => a * b, 1);
      yield { pieces: [{ name, start: 0, length: numel, at: 0 }], keys: keysOf(i), read: (key) => readFloat32(key === 'master' ? model : opt, key === 'master' ? name : `${i}.${key}`) };
    }
  } finally {
    opt.close();
    model.close();
  }
}

function readFloat32(f: SafetensorsFile, name: string): Float32Array {
  const t = f.tensor(name, { backend: 'cpu' });
  const v = t.toFloat32Array();
  t.dispose();
  return v;
}

/**
 * Reassembles `targets` from saved shards, one at a time (only the pieces' intersections are
 * copied); an element of a piece that no saved shard holds is an error naming `what`.
 * @example reassemble(manifestShards(dir, readManifest(dir)), [{ length: 6, pieces: [{ name: 'w', start: 0, length: 6, at: 0 }] }], dir)[0].master
 */
export function reassemble(shards: Iterable<SavedShard>, targets: readonly ShardTarget[], what: string): ShardValues[] {
  const out: ShardValues[] = targets.map((t) => ({ master: new Float32Array(t.length), state: {} }));
  const wanted = new Map<string, { piece: NamedPiece; target: number }[]>();
  targets.forEach((t, target) => t.pieces.forEach((piece) => wanted.set(piece.name, [...(wanted.get(piece.name) ?? []), { piece, target }])));
  let filled = 0;
  for (const shard of shards) {
    const hits = shard.pieces.flatMap((saved) => (wanted.get(saved.name) ?? []).map((w) => ({ saved, ...w })));
    if (!hits.length) continue;
    for (const key of ['master', ...shard.keys]) {
      const src = shard.read(key);
      for (const { saved, piece, target } of hits) {
        const lo = Math.max(saved.start, piece.start);
        const hi = Math.min(saved.start + saved.length, piece.start + piece.length);
        if (hi <= lo) continue;
        const o = out[target];
        const dst = key === 'master' ? o.master : (o.state[key] ??= new Float32Array(targets[target].length));
        dst.set(src.subarray(saved.at + lo - saved.start, saved.at + hi - saved.start), piece.at + lo - piece.start);
        if (key === 'master') filled += hi - lo;
      }
    }
  }
  const need = targets.reduce((n, t) => n + t.pieces.reduce((s, p) => s + p.length, 0), 0);
  if (filled !== need) {
    const seen = new Set<string>();
    for (const t of targets) for (const p of t.pieces) seen.add(p.name);
    throw new Error(`${what}: the saved shards hold ${filled} of the ${need} elements this run needs (parameters asked for: ${[...seen].slice(0, 5).join(', ')}${seen.size > 5 ? ', ...' : ''})`);
  }
  return out;
}

/** ShardValues as tensors for Optimizer.loadStateDict. */
export function stateTensors(v: ShardValues, backend: string): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(v.state).map(([k, a]) => [k, tensor(a, { shape: [a.length], backend })]));
}

/** Writes float32 values into an existing flat tensor (a ZeRO shard) in place. */
export function copyInto(dst: Tensor, values: Float32Array): void {
  if (values.length !== dst.numel) throw new Error(`sharded checkpoint: ${values.length} values for a shard of ${dst.numel}`);
  const src = tensor(values, { shape: [...dst.shape], backend: dst.backendName });
  backendOf(dst).kernels.copy(src, dst);
  src.dispose();
}
