// Inference benchmark (issue 3): prefill of a 128-token prompt and greedy KV-cache decode
// (batch 1 and 8) on random models with DESIGN.md's smol135m and qwen05b shapes, next to
// PyTorch CPU running the same shapes (../shared/bench/torch_llama_bench.py, mode infer) and the
// bandwidth bound of batch-1 decode (every float32 weight read once per token, at the streaming
// read bandwidth measured in the same run).
// Run: node --import tsx bench/infer.ts [--configs smol135m,qwen05b] [--no-peer] [--decode 128]
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { buildDecoder, readBandwidth } from './lib/decoder_bench.js';
import { SHARED_BENCH, median, runPeer, writeResult } from './lib/report.js';

const SHAPES: Record<string, { dim: number; layers: number; heads: number; kv: number; ffn: number; vocab: number; torch: string }> = {
  smol135m: { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152, torch: 'smollm135m' },
  qwen05b: { dim: 896, layers: 24, heads: 14, kv: 2, ffn: 4864, vocab: 151936, torch: 'qwen05b' },
};
const PROMPT = 128;

const build = (name: string): k.CausalLM => buildDecoder(name, SHAPES[name]);

/** Times prefill (first step) and decode (the rest) of greedy generation; medians over reps. */
async function time(model: k.CausalLM, batch: number, decode: number, reps: number) {
  const pre: number[] = [];
  const dec: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const ids = k.randint(0, model.config.vocabSize, [batch, PROMPT], { generator: new k.Generator(r) });
    let t0 = performance.now();
    let tFirst = 0;
    for await (const { step } of model.stream(ids, { maxNewTokens: decode + 1, temperature: 0, eosTokenId: [] })) {
      if (step === 0) tFirst = performance.now();
    }
    const t1 = performance.now();
    ids.dispose();
    if (r === 0) continue; // warm-up
    pre.push(tFirst - t0);
    dec.push(t1 - tFirst);
    t0 = 0;
  }
  return { prefillTokPerSec: (batch * PROMPT) / (median(pre) / 1e3), decodeTokPerSec: (batch * decode) / (median(dec) / 1e3) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { configs: { type: 'string', default: 'smol135m,qwen05b' }, 'no-peer': { type: 'boolean', default: false }, decode: { type: 'string', default: '128' }, reps: { type: 'string', default: '2' } } });
  const names = values.configs!.split(',');
  const decode = Number(values.decode);
  const reps = Number(values.reps);
  const bandwidth = Number(process.env.KESTREL_BANDWIDTH_GBS ?? readBandwidth(65536 * 4096 * 4));
  console.log(`streaming read bandwidth: ${bandwidth.toFixed(1)} GB/s (row sums over 1 GiB of float32, median of 5)`);
  const rows: Record<string, unknown>[] = [];
  for (const name of names) {
    const model = build(name);
    const params = model.parameters().reduce((n, p) => n + p.numel, 0);
    const b1 = await time(model, 1, decode, reps);
    const b8 = await time(model, 8, Math.min(decode, 64), Math.max(1, reps - 1));
    model.dispose();
    const bound = (bandwidth * 1e9) / (params * 4);
    rows.push({ config: name, params, batch1: b1, batch8: b8, decodeBoundTokPerSec: bound, decodeFractionOfBound: b1.decodeTokPerSec / bound });
    console.log(`${name}: prefill ${b1.prefillTokPerSec.toFixed(1)} tok/s, decode b1 ${b1.decodeTokPerSec.toFixed(2)} tok/s (${((100 * b1.decodeTokPerSec) / bound).toFixed(0)}% of the ${bound.toFixed(1)} tok/s bandwidth bound), decode b8 ${b8.decodeTokPerSec.toFixed(1)} tok/s`);
  }
  let peer: Record<string, { prefill: number; decode: number }> | string = 'not run (--no-peer)';
  if (!values['no-peer']) {
    const tmp = join(process.env.TMPDIR ?? '/tmp', `torch-infer-${process.pid}.json`);
    const configs = names.map((n) => SHAPES[n].torch).join(',');
    const r = runPeer(join(SHARED_BENCH, 'torch_llama_bench.py'), ['--configs', configs, '--modes', 'infer', '--runs', '1', '--json', tmp]);
    if (r.out === null) peer = `PyTorch peer unavailable: ${r.why}`;
    else {
      const { readFileSync } = await import('node:fs');
      const j = JSON.parse(readFileSync(tmp, 'utf8')) as { results: { config: string; prefill_tokens_per_s: number; decode_tokens_per_s: number }[] };
      peer = {};
      for (const n of names) {
        const res = j.results.find((x) => x.config === SHAPES[n].torch);
        if (res) peer[n] = { prefill: res.prefill_tokens_per_s, decode: res.decode_tokens_per_s };
      }
    }
  }
  console.log('\nconfig      kestrel prefill  torch prefill  ratio   kestrel decode  torch decode  ratio');
  for (const row of rows) {
    const n = row.config as string;
    const p = typeof peer === 'string' ? null : peer[n];
    const b1 = row.batch1 as { prefillTokPerSec: number; decodeTokPerSec: number };
    row.torch = p;
    row.prefillRatio = p ? b1.prefillTokPerSec / p.prefill : null;
    row.decodeRatio = p ? b1.decodeTokPerSec / p.decode : null;
    console.log(`${n.padEnd(10)} ${b1.prefillTokPerSec.toFixed(1).padStart(15)} ${(p?.prefill.toFixed(1) ?? '-').padStart(14)} ${(p ? (row.prefillRatio as number).toFixed(2) : '-').padStart(6)} ${b1.decodeTokPerSec.toFixed(2).padStart(16)} ${(p?.decode.toFixed(2) ?? '-').padStart(13)} ${(p ? (row.decodeRatio as number).toFixed(2) : '-').padStart(6)}`);
  }
  if (typeof peer === 'string') console.log(peer);
  const path = writeResult('infer', { threads: k.defaultBackend().name === 'cpu' ? 'see KESTREL_NUM_THREADS (default: all cores)' : 1, bandwidthGBs: bandwidth, promptTokens: PROMPT, decodeTokens: decode, rows, peer: typeof peer === 'string' ? peer : 'torch_llama_bench.py --modes infer' });
  console.log(`wrote ${path}`);
}

await main();
