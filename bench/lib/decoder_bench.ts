// What the decoder benchmarks share: a random Llama-shaped model of a DESIGN.md shape, and the
// machine's streaming read bandwidth now (the bound of batch-1 decode, which reads every weight once).
import { readFileSync, readdirSync } from 'node:fs';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { median } from './report.js';
import { dtypeBytes } from '../../src/tensor/dtype.js';

export interface DecoderShape {
  dim: number;
  layers: number;
  heads: number;
  kv: number;
  ffn: number;
  vocab: number;
}

/** A random-weight CausalLM of the shape (tied embeddings, seed 0), in eval mode. */
export function buildDecoder(name: string, s: DecoderShape): k.CausalLM {
  const config = decoderConfig({
    model_type: 'llama', vocab_size: s.vocab, hidden_size: s.dim, intermediate_size: s.ffn, num_hidden_layers: s.layers,
    num_attention_heads: s.heads, num_key_value_heads: s.kv, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
    max_position_embeddings: 4096,
  }, `${name} (bench)`);
  k.manualSeed(0);
  return new k.CausalLM(config, {}).eval();
}

/**
 * A streaming read of `bytes` bytes: a float32 GEMV, [1, 4096] times a [rows, 4096] matrix's
 * transpose (sgemm's small-M path, every thread its own rows, two flops per four bytes read), so
 * `sample()` gives the rate at which the decode's own kind of kernel streams a weight. It was a row
 * sum, which widens to double: on a 2-vCPU Xeon that ran at 16-17 GB/s where this GEMV read at
 * 26-30, so the bound it gave was not one. A benchmark takes a
 * sample next to each timed run of its own, so that the bound and the run see the same machine load
 * (shared machines swing by 2x).
 */
export class BandwidthProbe {
  private readonly w: k.Tensor;
  private readonly x = k.ones([1, 4096]);
  constructor(bytes: number) {
    this.w = k.ones([Math.ceil(bytes / 4 / 4096), 4096]);
    this.read(); // first touch
  }
  private read(): void {
    k.tidy(() => k.matmul(this.x, this.w.transpose(0, 1)));
  }
  /** GB/s over whole passes for at least `ms` milliseconds (a single pass of a small buffer would catch a moment, not the load a run saw). */
  sample(ms = 100): number {
    const t0 = performance.now();
    let passes = 0;
    do this.read(), passes++;
    while (performance.now() - t0 < ms);
    return (passes * this.w.numel * 4) / ((performance.now() - t0) / 1e3) / 1e9;
  }
  dispose(): void {
    this.w.dispose();
    this.x.dispose();
  }
}

/**
 * Bytes of the last-level caches, all of them (one per CCD on AMD, per socket on Intel), from
 * sysfs; 0 where it cannot be read.
 */
export function lastLevelCacheBytes(): number {
  const root = '/sys/devices/system/cpu';
  const caches = new Map<string, { level: number; bytes: number }>(); // by the CPUs that share one
  try {
    for (const cpu of readdirSync(root).filter((d) => /^cpu\d+$/.test(d)))
      for (const index of readdirSync(`${root}/${cpu}/cache`).filter((d) => d.startsWith('index'))) {
        const at = (f: string): string => readFileSync(`${root}/${cpu}/cache/${index}/${f}`, 'utf8').trim();
        if (at('type') === 'Instruction') continue;
        const size = /^(\d+)([KMG]?)$/.exec(at('size'));
        if (!size) continue;
        const bytes = Number(size[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[size[2] as '' | 'K' | 'M' | 'G'];
        caches.set(`${at('level')}:${at('shared_cpu_list')}`, { level: Number(at('level')), bytes });
      }
  } catch {
    return 0;
  }
  const last = Math.max(0, ...[...caches.values()].map((c) => c.level));
  return [...caches.values()].filter((c) => c.level === last).reduce((n, c) => n + c.bytes, 0);
}

/**
 * The buffer a memory-bandwidth probe reads for a `bytes`-byte weight: STREAM's rule, at least 4x
 * the last-level caches, so that the probe reads memory and not cache (a probe of a model's own 84
 * MB read 24 GB/s on a Zen 3 with 32 MB of L3, where memory gave 19-20, and 38 GB/s on a Xeon
 * whose 260 MB L3 held it all); never more than 1 GiB.
 */
export const memoryProbeBytes = (bytes: number): number => Math.min(Math.max(bytes, 4 * lastLevelCacheBytes()), 2 ** 30);

/** GB/s of a streaming read of `bytes` bytes, median of 5 samples. */
export function readBandwidth(bytes: number): number {
  const probe = new BandwidthProbe(bytes);
  const gbs = median(Array.from({ length: 5 }, () => probe.sample()));
  probe.dispose();
  return gbs;
}

/** Bytes of weight one decoded token reads through a QuantLinear (its data and scales). */
export const linearBytes = (q: k.quant.QuantLinear): number => q.qweight.numel * (q.type === 'bf16' ? 2 : 1) + (q.type === 'bf16' ? 0 : q.scales.numel * 4);

/** Bytes of weight a decoded token reads: every Linear (quantized, or at its dtype's size) and the head. */
export function bytesPerToken(model: k.CausalLM): number {
  let bytes = 0;
  for (const [, m] of model.namedModules()) {
    if (m instanceof k.quant.QuantLinear) bytes += linearBytes(m);
    else if (m instanceof k.nn.Linear) bytes += m.weight.numel * dtypeBytes(m.weight.dtype);
  }
  const embed = model.model.embed_tokens.weight;
  if (!model.lm_head) bytes += embed.numel * dtypeBytes(embed.dtype); // a tied head multiplies the embedding
  return bytes;
}
