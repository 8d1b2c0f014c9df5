// What the decoder benchmarks share: a random Llama-shaped model of a DESIGN.md shape, and the
// machine's streaming read bandwidth now (the bound of batch-1 decode, which reads every weight once).
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
