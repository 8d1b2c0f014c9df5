// `kestrel generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-new-tokens N]
// [--temperature T --top-p P --top-k K --seed S] [--quant bf16|int8|q4] [--json]`: streams the continuation.
import { tensor } from '../ops/creation.js';
import { MODEL_OPTIONS, generationFlags, loadFromFlags } from './model_args.js';
import { parseFlags } from './flags.js';

export async function generateCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { ...MODEL_OPTIONS, prompt: { type: 'string' }, 'prompt-ids': { type: 'string' }, json: { type: 'boolean', default: false } });
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
  const generated: number[] = [];
  let printed = '';
  const t0 = performance.now();
  let tFirst = 0;
  for await (const { tokens, step } of model.stream(ids, opts)) {
    if (step === 0) tFirst = performance.now();
    generated.push(tokens[0]);
    if (!values.json && tokenizer) {
      const text = tokenizer.decode(generated, { skipSpecialTokens: true });
      process.stdout.write(text.slice(printed.length));
      printed = text;
    }
  }
  const tEnd = performance.now();
  const prefill = promptIds.length / ((tFirst - t0) / 1e3);
  const decode = generated.length > 1 ? (generated.length - 1) / ((tEnd - tFirst) / 1e3) : 0;
  const text = tokenizer ? tokenizer.decode(generated, { skipSpecialTokens: true }) : null;
  if (values.json) {
    const out = { prompt_ids: promptIds, generated_ids: generated, text, prefill_tokens_per_sec: round(prefill), decode_tokens_per_sec: round(decode) };
    process.stdout.write(JSON.stringify(out) + '\n');
  } else {
    if (!tokenizer) process.stdout.write(generated.join(' '));
    process.stderr.write(`\n[${promptIds.length} prompt tokens at ${round(prefill)} tok/s, ${generated.length} new at ${round(decode)} tok/s]\n`);
  }
  ids.dispose();
  model.dispose();
  return 0;
}

const round = (x: number): number => Math.round(x * 10) / 10;
