// `kestrel demo` (= npm start): the whole path with nothing downloaded. Writes a byte-level
// tokenizer and a tiny Llama config, generates synthetic tasks, pretrains on their text,
// fine-tunes on them as chat (loss on the assistant's tokens only), measures exact-match
// accuracy on held-out questions before and after, and saves an HF folder that `kestrel chat`
// and `kestrel generate` load. `--finetune lora|qlora` runs the fine-tune phase as LoRA on the
// frozen pretrained model (QLoRA: on its NF4-quantized copy) and saves the adapter beside it.
// `--dpo` adds a preference phase (src/demo/dpo_demo.ts): DPO with LoRA, held-out pair margins before and after.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadDataset } from '../data/index.js';
import { BYTE_VOCAB, writeByteTokenizer } from '../demo/byte_tokenizer.js';
import { type Task, makeTasks } from '../demo/tasks.js';
import { CausalLM } from '../models/causal_lm.js';
import { savePretrained } from '../models/load.js';
import { decoderConfig } from '../models/registry.js';
import { tensor } from '../ops/creation.js';
import { AdamW } from '../optim/adamw.js';
import { cosine } from '../optim/schedules.js';
import { manualSeed } from '../tensor/rng.js';
import { type Tokenizer, loadTokenizer } from '../tokenizer/index.js';
import { Trainer } from '../train/trainer.js';
import { decayParamGroups } from '../train/param_groups.js';
import { injectLora, saveAdapter } from '../lora/peft.js';
import { quantizeModel } from '../quant/quantize_model.js';
import '../infer/index.js';
import { numberFlag, parseFlags } from './flags.js';
import { Interrupted } from '../train/interrupt.js';
import { DPO_LORA, dpoDemo } from '../demo/dpo_demo.js';

const HF_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: BYTE_VOCAB, hidden_size: 128, intermediate_size: 344,
  num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128, rms_norm_eps: 1e-5,
  rope_theta: 10000, tie_word_embeddings: true, bos_token_id: null, eos_token_id: 258, pad_token_id: 256, torch_dtype: 'float32',
};

/** The fine-tune phase's adapters for --finetune lora|qlora: Unsloth's r 16 on every linear layer. */
const LORA = { r: 16, alpha: 16, targetModules: 'all-linear' as const };

/** Exact-match accuracy of greedy answers to the held-out questions. */
async function accuracy(model: CausalLM, tok: Tokenizer, tasks: Task[]): Promise<number> {
  let right = 0;
  model.eval();
  for (const t of tasks) {
    const prompt = tok.applyChatTemplate([{ role: 'user', content: t.question }], { addGenerationPrompt: true });
    const ids = tensor([tok.encode(prompt, { addSpecialTokens: false })], { dtype: 'int64' });
    const out = (await model.generate(ids, { maxNewTokens: 10, temperature: 0, eosTokenId: [tok.eosTokenId!] })).toArray() as number[][];
    ids.dispose();
    const answer = tok.decode(out[0].slice(ids.shape[1]), { skipSpecialTokens: true }).trim();
    if (answer === t.answer) right++;
  }
  model.train();
  return right / tasks.length;
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    json: { type: 'boolean', default: false }, output: { type: 'string' }, steps: { type: 'string', default: '600' }, finetune: { type: 'string', default: 'full' },
    dpo: { type: 'boolean', default: false },
  });
  const mode = values.finetune as 'full' | 'lora' | 'qlora';
  if (!['full', 'lora', 'qlora'].includes(mode)) throw new Error(`--finetune must be full, lora or qlora, got '${values.finetune}'`);
  if (values.dpo && mode !== 'full') throw new Error('--dpo runs on the fully fine-tuned model (--finetune full): its LoRA adapters are the DPO phase\'s own');
  const t0 = performance.now();
  const say = (s: string): void => {
    if (!values.json) process.stdout.write(s + '\n');
  };
  const work = mkdtempSync(join(tmpdir(), 'kestrel-demo-'));
  const modelDir = resolve(values.output ?? join(work, 'model'));
  mkdirSync(modelDir, { recursive: true });
  writeByteTokenizer(modelDir);
  writeFileSync(join(modelDir, 'config.json'), JSON.stringify(HF_CONFIG, null, 2));
  const tok = await loadTokenizer(modelDir);
  const train = makeTasks(4000, 1);
  const seen = new Set(train.filter((_, i) => i % 4 !== 3).map((t) => t.question));
  const heldOut = makeTasks(400, 2).filter((t) => !seen.has(t.question)).slice(0, 60);
  writeFileSync(join(work, 'pretrain.jsonl'), train.map((t) => JSON.stringify({ text: t.text })).join('\n') + '\n');
  writeFileSync(join(work, 'chat.jsonl'), train.map((t) => JSON.stringify({ messages: [{ role: 'user', content: t.question }, { role: 'assistant', content: t.answer }] })).join('\n') + '\n');
  say(`kestrel demo: ${train.length} synthetic tasks (addition, reversal, sorting, lookup), ${heldOut.length} held out; work dir ${work}`);

  manualSeed(0);
  const model = new CausalLM(decoderConfig(HF_CONFIG, 'demo config'));
  const params = model.parameters().reduce((n, p) => n + p.numel, 0);
  say(`model: tiny Llama, ${params.toLocaleString()} parameters, byte-level tokenizer (${BYTE_VOCAB} tokens)`);
  const before = await accuracy(model, tok, heldOut);
  const steps = numberFlag(values, 'steps', { int: true, min: 1 })!;
  const phase = async (name: string, file: string, pack: boolean, lr: number): Promise<number> => {
    const { train: data } = await loadDataset(join(work, file), { tokenizer: tok, seqLen: pack ? 96 : 48, pack, seed: 1, eosId: tok.eosTokenId!, padId: tok.padTokenId! });
    const opt = new AdamW(decayParamGroups(model, 0.01), { lr });
    const trainer = new Trainer({ model, data, optimizer: opt, schedule: cosine(lr, 20, steps, lr / 10), batchSize: 16, maxSteps: steps, clip: 1, outputDir: join(work, name), progress: !values.json && process.stderr.isTTY });
    const m = await trainer.train();
    opt.dispose();
    if (trainer.interrupted) throw new Interrupted(`interrupted in ${name} at step ${trainer.step} (checkpoint in ${trainer.lastCheckpoint})`);
    const loss = m.at(-1)!.loss;
    say(`${name}: ${steps} steps, loss ${m[0].loss.toFixed(3)} -> ${loss.toFixed(3)}`);
    return loss;
  };
  const pretrainLoss = await phase('pretrain', 'pretrain.jsonl', true, 3e-3);
  const pretrained = await accuracy(model, tok, heldOut);
  const generationConfig = { eos_token_id: 258, pad_token_id: 256 };
  let adapterDir: string | null = null;
  if (mode !== 'full') {
    savePretrained(modelDir, { model, hfConfig: HF_CONFIG, generationConfig }); // the base the adapter belongs to
    if (mode === 'qlora') quantizeModel(model, { type: 'nf4', doubleQuant: true });
    injectLora(model, LORA);
  }
  const finetuneLoss = await phase('finetune', 'chat.jsonl', false, mode === 'full' ? 2e-3 : 1e-2);
  const after = await accuracy(model, tok, heldOut);
  if (mode === 'full') savePretrained(modelDir, { model, hfConfig: HF_CONFIG, generationConfig });
  else saveAdapter(model, (adapterDir = join(modelDir, 'adapter')), LORA, { baseModel: modelDir });
  let dpo: Record<string, number | string> | null = null;
  if (values.dpo) {
    // preference phase: right answers over plausible wrong ones, on held-out pairs (the saved model stays the fine-tuned one)
    const r = await dpoDemo(model, tok, train.filter((_, i) => i % 4 !== 3).slice(0, 800), heldOut, { steps: 30, say });
    const dpoDir = join(modelDir, 'dpo-adapter');
    saveAdapter(model, dpoDir, DPO_LORA, { baseModel: modelDir });
    dpo = {
      margin_before: r.before['rewards/margins'], margin_after: r.after['rewards/margins'],
      ranking_accuracy_before: r.before['rewards/accuracies'], ranking_accuracy_after: r.after['rewards/accuracies'],
      accuracy_after_dpo: await accuracy(model, tok, heldOut), adapter_dir: dpoDir,
    };
  }
  model.dispose();
  const seconds = (performance.now() - t0) / 1e3;
  const summary = { finetune: mode, accuracy_before: before, accuracy_pretrained: pretrained, accuracy_after: after, model_dir: modelDir, adapter_dir: adapterDir, ...(dpo ? { dpo } : {}), seconds: Math.round(seconds * 10) / 10 };
  if (values.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else {
    say('');
    say('| stage          | value |');
    say('|----------------|-------|');
    say(`| pretrain loss  | ${pretrainLoss.toFixed(3)} |`);
    say(`| finetune loss  | ${finetuneLoss.toFixed(3)} |`);
    say(`| accuracy before| ${(100 * before).toFixed(1)}% |`);
    say(`| after pretrain | ${(100 * pretrained).toFixed(1)}% |`);
    say(`| accuracy after | ${(100 * after).toFixed(1)}% |`);
    if (dpo) say(`| after DPO      | ${(100 * Number(dpo.accuracy_after_dpo)).toFixed(1)}% (held-out pairs ranked right ${(100 * Number(dpo.ranking_accuracy_before)).toFixed(0)}% -> ${(100 * Number(dpo.ranking_accuracy_after)).toFixed(0)}%) |`);
    say(`| seconds        | ${seconds.toFixed(1)} |`);
    say(`\nsaved to ${modelDir}; try: kestrel chat --model ${modelDir}${adapterDir ? ` --adapter ${adapterDir}` : ''}`);
  }
  return 0;
}
