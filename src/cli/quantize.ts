// `kestrel quantize --model DIR --calib data.jsonl --format int8|q4 --out DIR [--heldout FILE]`:
// weight-only int8/q4 quantization with AWQ scales searched on calibration activations
// (src/quant/calibrate.ts), saved as a folder loadPretrained reads (src/quant/kestrel_format.ts
// documents it), with the held-out loss and perplexity of the float model, of plain
// round-to-nearest and of the calibrated model, and each one's KL divergence from the float model.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { BadLines, DataError } from '../data/errors.js';
import { readRecords } from '../data/readers.js';
import { saveCheckpointFolder } from '../io/hf_folder.js';
import { CausalLM } from '../models/causal_lm.js';
import { loadCausalLM } from '../models/load.js';
import { tensor } from '../ops/creation.js';
import { logSoftmax } from '../ops/softmax.js';
import { narrow } from '../ops/view.js';
import { calibrateModel } from '../quant/calibrate.js';
import { kestrelQuantCheckpoint } from '../quant/kestrel_format.js';
import { quantizeModel } from '../quant/quantize_model.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { numberFlag, parseFlags } from './flags.js';
import { copyTokenizerFiles } from './merge.js';

const OPTIONS = {
  model: { type: 'string' }, calib: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' }, heldout: { type: 'string' },
  'seq-len': { type: 'string' }, 'calib-rows': { type: 'string' }, 'group-size': { type: 'string' }, json: { type: 'boolean', default: false },
} as const;

/** The `text` of every record of a JSONL/JSON/Parquet file, bad records naming file:line. */
async function readTexts(file: string): Promise<string[]> {
  const texts: string[] = [];
  for await (const rec of readRecords(file, new BadLines(false))) {
    const t = rec.value.text;
    if (typeof t !== 'string' || !t) throw new DataError(rec.where, `needs a non-empty string field "text" (calibration and held-out text), got ${JSON.stringify(t)?.slice(0, 40)}`);
    texts.push(t);
  }
  if (!texts.length) throw new Error(`${file}: no records`);
  return texts;
}

/** Token sequences of at most seqLen tokens (each text split, pieces of one token dropped). */
function sequences(tok: Tokenizer, texts: string[], seqLen: number): number[][] {
  const out: number[][] = [];
  for (const t of texts) {
    const ids = tok.encode(t);
    for (let i = 0; i < ids.length; i += seqLen) if (ids.length - i >= 2) out.push(ids.slice(i, i + seqLen));
  }
  return out;
}

/** Held-out tokens whose log-probabilities are kept to measure KL(float32 ‖ quantized). */
const KL_TOKENS = 512;

interface HeldOut {
  loss: number;
  perplexity: number;
  /** mean KL(float32 ‖ this model) per token over the first KL_TOKENS positions (0 for float32 itself) */
  klFromFloat32: number;
}

/**
 * Mean next-token cross-entropy over every target of the sequences (and its exp, perplexity); the
 * log-probabilities of the first KL_TOKENS positions go to `keep`, or are compared with `ref`'s.
 */
function evaluate(model: CausalLM, seqs: number[][], o: { keep?: Float32Array[]; ref?: Float32Array[] }): HeldOut {
  let [sum, n, kl, klRows] = [0, 0, 0, 0];
  for (const s of seqs)
    noGrad(() => tidy(() => {
      const ids = tensor([s], { dtype: 'int64' });
      const out = model.forward({ inputIds: ids, labels: ids });
      sum += out.loss!.item() * (s.length - 1);
      n += s.length - 1;
      const take = Math.min(s.length, KL_TOKENS - klRows);
      if (take <= 0) return;
      const lp = logSoftmax(narrow(out.logits!, 1, 0, take), -1).toFloat32Array();
      const V = lp.length / take;
      for (let t = 0; t < take; t++, klRows++) {
        const row = lp.slice(t * V, (t + 1) * V);
        o.keep?.push(row);
        const ref = o.ref?.[klRows];
        if (ref) for (let v = 0; v < V; v++) kl += Math.exp(ref[v]) * (ref[v] - row[v]);
      }
    }));
  return { loss: sum / n, perplexity: Math.exp(sum / n), klFromFloat32: o.ref ? kl / klRows : 0 };
}

const describe = (h: HeldOut): string => `held-out loss ${h.loss.toFixed(4)}, perplexity ${h.perplexity.toFixed(3)}, KL from float32 ${h.klFromFloat32.toExponential(3)}`;

async function loadDecoder(dir: string): Promise<{ model: CausalLM; tokenizer: Tokenizer; hfConfig: Record<string, unknown>; generationConfig: Record<string, unknown> | null }> {
  const p = await loadCausalLM(dir);
  if (!(p.model instanceof CausalLM)) {
    p.model.dispose();
    throw new Error(`${dir}: kestrel quantize takes a decoder-family model (GPT-2 is not supported)`);
  }
  if (!p.tokenizer) throw new Error(`${dir}: the folder has no tokenizer (needed to read --calib text)`);
  return { model: p.model, tokenizer: p.tokenizer, hfConfig: p.hfConfig, generationConfig: p.generationConfig };
}

export async function quantizeCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, OPTIONS);
  if (!values.model || !values.calib || !values.out || !values.format) throw new Error('--model DIR, --calib FILE, --format int8|q4 and --out DIR are required');
  const type = values.format;
  if (type !== 'int8' && type !== 'q4') throw new Error(`--format must be int8 or q4, got '${type}'`);
  const seqLen = numberFlag(values, 'seq-len', { int: true, min: 2 }) ?? 256;
  const maxRows = numberFlag(values, 'calib-rows', { int: true, min: 1 }) ?? 512;
  const blockSize = numberFlag(values, 'group-size', { int: true, min: 16 }) ?? 32;
  let calibTexts = await readTexts(values.calib);
  let heldTexts: string[];
  if (values.heldout) heldTexts = await readTexts(values.heldout);
  else {
    if (calibTexts.length < 2) throw new Error(`${values.calib}: one record cannot be split into calibration and held-out text; give --heldout FILE`);
    const cut = Math.max(1, Math.floor(calibTexts.length / 10)); // the last 10% held out
    [calibTexts, heldTexts] = [calibTexts.slice(0, -cut), calibTexts.slice(-cut)];
  }
  const log = (s: string) => values.json || process.stderr.write(s + '\n');

  const float = await loadDecoder(values.model);
  const calib = sequences(float.tokenizer, calibTexts, seqLen);
  const held = sequences(float.tokenizer, heldTexts, seqLen);
  if (!calib.length || !held.length) throw new Error('the calibration and held-out text must each give at least one sequence of 2 or more tokens');
  const floatLogProbs: Float32Array[] = [];
  const before = evaluate(float.model, held, { keep: floatLogProbs });
  log(`float32: ${describe(before)} (${held.length} sequences)`);
  const tiedHead = (m: CausalLM) => (m.lm_head ? undefined : m.model.embed_tokens.weight);

  // round to nearest, no calibration: the baseline the calibrated scales must not lose to
  quantizeModel(float.model, { type, blockSize, head: true, tiedHead: tiedHead(float.model) });
  const rtn = evaluate(float.model, held, { ref: floatLogProbs });
  float.model.dispose();
  log(`${type} round-to-nearest: ${describe(rtn)}`);

  const p = await loadDecoder(values.model);
  // logits are computed (and dropped) so that the head sees its inputs
  const layers = calibrateModel(p.model, () => { for (const s of calib) tidy(() => p.model.forward({ inputIds: tensor([s], { dtype: 'int64' }) })); },
    { type, blockSize, maxRows, tiedHead: tiedHead(p.model) });
  const awq = evaluate(p.model, held, { ref: floatLogProbs });
  log(`${type} AWQ (${layers.length} layers, ${calib.length} calibration sequences): ${describe(awq)}`);
  const c = kestrelQuantCheckpoint(p.model, p.hfConfig, 'awq');
  saveCheckpointFolder(values.out, { config: c.config, generationConfig: p.generationConfig, tensors: c.tensors });
  copyTokenizerFiles(values.model, values.out);
  const report = { format: type, group_size: type === 'q4' ? blockSize : null, calibration: 'awq', heldout: { float32: before, rtn, awq }, layers };
  writeFileSync(join(values.out, 'quantize_report.json'), JSON.stringify(report, null, 2) + '\n');
  p.model.dispose();
  if (values.json) process.stdout.write(JSON.stringify({ ...report, layers: layers.length }) + '\n');
  else process.stdout.write(`wrote ${values.out} (${type}, AWQ): held-out perplexity ${before.perplexity.toFixed(3)} float32 -> ${rtn.perplexity.toFixed(3)} round-to-nearest -> ${awq.perplexity.toFixed(3)} calibrated; KL from float32 ${rtn.klFromFloat32.toExponential(3)} -> ${awq.klFromFloat32.toExponential(3)}\n`);
  return 0;
}
