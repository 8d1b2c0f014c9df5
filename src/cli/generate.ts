// `kestrel generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N]
// [--temperature T --top-p P --top-k K --seed S] [--quant bf16|int8|q4] [--kv-dtype fp32|bf16] [--draft-model DIR [--num-draft-tokens K]] [--json]`:
// streams the continuation (with a draft model: speculative greedy decoding, speculative.ts).
import { tensor } from '../ops/creation.js';
import { MODEL_OPTIONS, generationFlags, loadFromFlags } from './model_args.js';
import { numberFlag, parseFlags } from './flags.js';
import { speculativeDecode, type SpeculativeStats } from '../infer/speculative.js';
import { resolveGenerateOptions } from '../infer/generate.js';
import { loadCausalLM } from '../models/load.js';
import { checkInferenceQuant } from '../quant/quantize_model.js';

export async function generateCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { ...MODEL_OPTIONS, prompt: { type: 'string' }, 'prompt-ids': { type: 'string' }, json: { type: 'boolean', default: false }, 'draft-model': { type: 'string' }, 'num-draft-tokens': { type: 'string' } });
  const numDraftTokens = numberFlag(values, 'num-draft-tokens', { int: true, min: 1 }) ?? 4;
  if ((values.prompt === undefined) === (values['prompt-ids'] === undefined)) throw new Error('give exactly one of --prompt TEXT or --prompt-ids 1,2,3');
  const p = await loadFromFlags(values);
  const { model, tokenizer } = p;
  let promptIds: number[];
  if (values.prompt !== undefined) {
    if (!tokenizer) throw new Error(`${values.model} has no tokenizer; use --prompt-ids or --tokenizer DIR`);
    promptIds = tokenizer.encode(values.prompt);
  } else {
    promptIds = values['prompt-ids']!.split(',').map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 0) throw new Error(`--prompt-ids: '${s}' is not a token id`);
      return n;
    });
  }
  const flags = generationFlags(values, p);
  const opts = { ...flags, temperature: flags.temperature ?? 0 }; // greedy unless asked
  const ids = tensor([promptIds], { dtype: 'int64' });
  const draft = values['draft-model'] ? await loadCausalLM(values['draft-model'], { quant: values.quant === undefined ? undefined : checkInferenceQuant(values.quant, '--quant') }) : null;
  const generated: number[] = [];
  let printed = '';
  const t0 = performance.now();
  let tFirst = 0;
  const show = (tokens: number[]): void => {
    if (!tFirst) tFirst = performance.now();
    generated.push(...tokens);
    if (!values.json && tokenizer) {
      const text = tokenizer.decode(generated, { skipSpecialTokens: true });
      process.stdout.write(text.slice(printed.length));
      printed = text;
    }
  };
  let speculative: SpeculativeStats | null = null;
  if (draft) {
    // greedy with a draft model: the same tokens as plain greedy, fewer target forwards
    const r = resolveGenerateOptions(model, opts);
    if (r.doSample) throw new Error('--draft-model decodes greedily: leave --temperature at 0');
    speculative = speculativeDecode(model, promptIds, { draftModel: draft.model, numDraftTokens, maxNewTokens: r.maxNewTokens, eos: r.eos, onTokens: show, kvCacheDtype: opts.kvCacheDtype }).stats;
    draft.model.dispose();
  } else for await (const { tokens } of model.stream(ids, opts)) show(tokens);
  const tEnd = performance.now();
  const prefill = promptIds.length / ((tFirst - t0) / 1e3);
  const decode = generated.length > 1 ? (generated.length - 1) / ((tEnd - tFirst) / 1e3) : 0;
  const text = tokenizer ? tokenizer.decode(generated, { skipSpecialTokens: true }) : null;
  if (values.json) {
    const out = { prompt_ids: promptIds, generated_ids: generated, text, prefill_tokens_per_sec: round(prefill), decode_tokens_per_sec: round(decode), ...(speculative ? { acceptance_rate: speculative.acceptanceRate, target_forwards: speculative.targetForwards } : {}) };
    process.stdout.write(JSON.stringify(out) + '\n');
  } else {
    if (!tokenizer) process.stdout.write(generated.join(' '));
    const spec = speculative ? `, draft acceptance ${(100 * speculative.acceptanceRate).toFixed(0)}% over ${speculative.targetForwards} target forwards` : '';
    process.stderr.write(`\n[${promptIds.length} prompt tokens at ${round(prefill)} tok/s, ${generated.length} new at ${round(decode)} tok/s${spec}]\n`);
  }
  ids.dispose();
  model.dispose();
  return 0;
}

const round = (x: number): number => Math.round(x * 10) / 10;
