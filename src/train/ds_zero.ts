// DeepSpeed's `zero_optimization` section (docs: deepspeed.ai/docs/config-json, "ZeRO
// Optimizations"; the fields of deepspeed/runtime/zero/config.py). Every documented key is read:
// the ones that change what Kestrel does set a RunSettings field, the ones that describe what
// Kestrel always does (overlap, contiguous buckets, reduce-scatter) are checked and accepted,
// CPU offload is accepted with one note (the CPU backend keeps every state in host memory), and
// what Kestrel cannot do (NVMe offload, quantized ZeRO++ collectives) is a clear error. Of the
// stage-3 knobs, param_persistence_threshold, prefetch_bucket_size and max_live_parameters set
// ZeroStage3's options; the others are checked and only read (see acceptedKeys). An unknown key is an error naming it (a typo must not be silently ignored).
// `"auto"` takes the value the HF Trainer would put there (transformers' HfTrainerDeepSpeedConfig).

export interface ZeroSettings {
  stage: 0 | 1 | 2 | 3;
  /** stage 3: layer parameters with fewer elements stay whole on every rank ('auto': 10·hidden_size, as the HF Trainer sets it) */
  persistenceThreshold?: number | 'auto';
  /** stage 3: the next layer is prefetched only when it has at most this many elements ('auto': 0.9·hidden_size²) */
  prefetchBucketSize?: number | 'auto';
  /** stage 3: ... and when the running and the prefetched layer hold at most this many elements together */
  maxLiveParameters?: number;
  /** elements per gradient bucket, or 'auto' (hidden_size², as the HF Trainer sets it) */
  reduceBucketSize?: number | 'auto';
}

type Check = (v: unknown, field: string) => void;

const isAuto = (v: unknown): boolean => v === 'auto';

function bool(file: string): Check {
  return (v, field) => {
    if (typeof v !== 'boolean') throw new Error(`${file}: '${field}' must be true or false, got ${JSON.stringify(v)}`);
  };
}

function count(file: string, min = 0): Check {
  return (v, field) => {
    if (isAuto(v)) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new Error(`${file}: '${field}' must be a number >= ${min} or "auto", got ${JSON.stringify(v)}`);
  };
}

/** Keys whose only effect in DeepSpeed is something Kestrel always does (or a GPU-memory tuning knob): checked, then accepted. */
function acceptedKeys(file: string): Record<string, Check> {
  const b = bool(file);
  const n = count(file);
  return {
    allgather_partitions: b, // Kestrel always all-gathers the updated partitions (no broadcast variant)
    allgather_bucket_size: n, // the allGather after the update goes in 4 MiB pieces through a kept buffer (dist/shard_gather.ts)
    overlap_comm: b, // reductions always run on the transport's worker during backward
    reduce_scatter: b, // always reduce-scatter; false (all-reduce, then keep the partition) gives the same numbers
    contiguous_gradients: b, // buckets are always contiguous flat buffers
    round_robin_gradients: b, // an ordering for CPU offload; the CPU backend's state is already in host memory
    load_from_fp32_weights: b, // masters are always float32
    elastic_checkpoint: b,
    ignore_unused_parameters: b, // unused parameters always contribute zeros, so every rank reduces the same buckets
    sub_group_size: n, // each rank's optimizer steps its shard per parameter group
    use_multi_rank_bucket_allreduce: b,
    legacy_stage1: b,
    memory_efficient_linear: b,
    log_trace_cache_warnings: b,
    // stage 3 knobs that are only read: prefetch, persistence and live-parameter limits are
    // read below (stage3Setting); the model-wide persistence limit, the reuse distance (Kestrel
    // never keeps a released layer for reuse) and 16-bit gathering on save (the final save writes
    // float32 layer by layer) change nothing here
    stage3_prefetch_bucket_size: n, prefetch_bucket_size: n,
    stage3_param_persistence_threshold: n, param_persistence_threshold: n,
    stage3_model_persistence_threshold: n, model_persistence_threshold: n,
    stage3_max_live_parameters: n, max_live_parameters: n,
    stage3_max_reuse_distance: n, max_reuse_distance: n,
    stage3_gather_16bit_weights_on_model_save: b, gather_16bit_weights_on_model_save: b, stage3_gather_fp16_weights_on_model_save: b,
    stage3_use_all_reduce_for_fetch_params: b, use_all_reduce_for_fetch_params: b,
    module_granularity_threshold: n, pipeline_loading_checkpoint: b, override_module_apply: b,
    mics_hierarchical_params_gather: b,
  };
}

/** ZeRO++ and MiCS features that change the numbers or the layout: off is accepted, on is refused. */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  zero_quantized_weights: (v) => v === true,
  zero_quantized_nontrainable_weights: (v) => v === true,
  zero_quantized_gradients: (v) => v === true,
  zeropp_loco_param: (v) => v !== null && v !== undefined,
  zero_hpz_partition_size: (v) => v !== 1,
  mics_shard_size: (v) => typeof v === 'number' && v > 0,
};

const OFFLOAD_KEYS = new Set(['device', 'nvme_path', 'buffer_count', 'buffer_size', 'max_in_cpu', 'pin_memory', 'pipeline_read', 'pipeline_write', 'fast_init', 'ratio', 'pipeline']);

/** offload_optimizer / offload_param: 'none' and 'cpu' run (the CPU backend already holds them in host memory); 'nvme' is refused. */
function offload(v: unknown, field: string, file: string, notes: string[]): void {
  if (v === null || v === undefined) return;
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: '${field}' must be an object ({"device": "cpu"})`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!OFFLOAD_KEYS.has(k)) throw new Error(`${file}: unknown key '${field}.${k}' (known: ${[...OFFLOAD_KEYS].join(', ')})`);
  const device = o.device ?? 'none';
  if (device === 'nvme') throw new Error(`${file}: '${field}.device' nvme is not supported: Kestrel offloads nothing to NVMe (use "cpu" or "none"; on the CPU backend every state is already in host memory)`);
  if (device !== 'cpu' && device !== 'none') throw new Error(`${file}: '${field}.device' must be "none", "cpu" or "nvme", got ${JSON.stringify(device)}`);
  if (device === 'cpu' && !notes.some((n) => n.includes('offload')))
    notes.push(`${file}: zero_optimization offload to cpu accepted: on the CPU backend the optimizer state and parameters are already in host memory`);
}

/** The closest known key (edit distance ≤ 3), for the error about an unknown one. */
function closest(key: string, known: readonly string[]): string | null {
  const dist = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0];
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j];
        row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length];
  };
  const best = known.map((k) => [k, dist(key, k)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 3 ? best[0] : null;
}

/**
 * Reads a ds_config's zero_optimization object.
 * @example zeroFromDeepSpeed({ stage: 2, reduce_bucket_size: 5e8 }, 'ds.json') // { settings: { stage: 2, reduceBucketSize: 5e8 }, notes: [] }
 */
export function zeroFromDeepSpeed(z: Record<string, unknown>, file: string): { settings: ZeroSettings; notes: string[] } {
  const notes: string[] = [];
  const accepted = acceptedKeys(file);
  const known = ['stage', 'reduce_bucket_size', 'offload_optimizer', 'offload_param', 'cpu_offload', 'cpu_offload_param', 'cpu_offload_use_pin_memory', ...Object.keys(accepted), ...Object.keys(UNSUPPORTED)];
  for (const k of Object.keys(z)) {
    if (known.includes(k)) continue;
    const near = closest(k, known);
    throw new Error(`${file}: unknown key 'zero_optimization.${k}'${near ? ` (did you mean '${near}'?)` : ''}`);
  }
  const stage = z.stage ?? 0;
  if (![0, 1, 2, 3].includes(stage as number)) throw new Error(`${file}: 'zero_optimization.stage' must be 0, 1, 2 or 3, got ${JSON.stringify(stage)}`);
  for (const [k, check] of Object.entries(accepted)) if (z[k] !== undefined) check(z[k], `zero_optimization.${k}`);
  for (const [k, on] of Object.entries(UNSUPPORTED))
    if (z[k] !== undefined && on(z[k])) throw new Error(`${file}: 'zero_optimization.${k}' = ${JSON.stringify(z[k])} is not supported (ZeRO++/MiCS quantized or hierarchical partitioning); remove it or turn it off`);
  offload(z.offload_optimizer, 'zero_optimization.offload_optimizer', file, notes);
  offload(z.offload_param, 'zero_optimization.offload_param', file, notes);
  for (const k of ['cpu_offload', 'cpu_offload_param', 'cpu_offload_use_pin_memory']) if (z[k] !== undefined) bool(file)(z[k], `zero_optimization.${k}`);
  if (z.cpu_offload === true || z.cpu_offload_param === true) offload({ device: 'cpu' }, 'zero_optimization.cpu_offload', file, notes);
  const settings: ZeroSettings = { stage: stage as 0 | 1 | 2 | 3 };
  if (stage === 3) {
    // DeepSpeed spells each with and without the stage3_ prefix
    const read = (k: string): unknown => z[`stage3_${k}`] ?? z[k];
    const persist = read('param_persistence_threshold');
    const prefetch = read('prefetch_bucket_size');
    const live = read('max_live_parameters');
    if (persist !== undefined) settings.persistenceThreshold = isAuto(persist) ? 'auto' : (persist as number);
    if (prefetch !== undefined) settings.prefetchBucketSize = isAuto(prefetch) ? 'auto' : (prefetch as number);
    if (live !== undefined && !isAuto(live)) settings.maxLiveParameters = live as number;
  }
  const bucket = z.reduce_bucket_size;
  if (bucket !== undefined) {
    count(file, 0)(bucket, 'zero_optimization.reduce_bucket_size');
    // 0 (transformers' own stage-3 test config) makes every parameter its own bucket, as in DeepSpeed
    settings.reduceBucketSize = isAuto(bucket) ? 'auto' : Math.max(1, Math.floor(bucket as number));
  }
  return { settings, notes };
}

/** stage-3 "auto" values as transformers' trainer_config_finalize sets them: persistence 10·hidden, prefetch 0.9·hidden². */
export function resolveStage3(z: Pick<ZeroSettings, 'persistenceThreshold' | 'prefetchBucketSize'>, hiddenSize: number): { persistenceThreshold?: number; prefetchBucketSize?: number } {
  const out: { persistenceThreshold?: number; prefetchBucketSize?: number } = {};
  if (z.persistenceThreshold !== undefined) out.persistenceThreshold = z.persistenceThreshold === 'auto' ? 10 * hiddenSize : z.persistenceThreshold;
  if (z.prefetchBucketSize !== undefined) out.prefetchBucketSize = z.prefetchBucketSize === 'auto' ? Math.floor(0.9 * hiddenSize * hiddenSize) : z.prefetchBucketSize;
  return out;
}

/** reduce_bucket_size "auto" is hidden_size² (transformers' trainer_config_finalize); a number stays. */
export function resolveBucketSize(size: number | 'auto' | undefined, hiddenSize: number): number | undefined {
  return size === 'auto' ? hiddenSize * hiddenSize : size;
}
