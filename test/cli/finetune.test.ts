// `kestrel finetune` end to end on a random model from a config.json: LoRA (the default) and
// QLoRA save a PEFT adapter that loads back onto the base, --full saves the whole model, every
// mode writes train's metrics.jsonl, and contradictory or out-of-range settings are errors.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveSettings } from '../../src/cli/train.js';
import { FINETUNE_DEFAULTS, finetuneDtype, loraFromFlags } from '../../src/cli/finetune.js';
import { loadNative } from '../../src/backend/addon.js';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { runCli } from '../helpers.js';

const HF_CONFIG = {
  model_type: 'llama', vocab_size: 32, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
  num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
};

/** A random base model saved as an HF folder (dir/base) and pre-tokenized data. */
function setup(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-cli-finetune-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(HF_CONFIG));
  k.manualSeed(3);
  const model = new k.CausalLM(decoderConfig(HF_CONFIG, 'test config'));
  k.savePretrained(join(dir, 'base'), { model, hfConfig: HF_CONFIG });
  model.dispose();
  const lines = Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 10 }, (_, t) => (i + t) % 32) }));
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  return dir;
}

const metrics = (out: string): Record<string, unknown>[] => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

test('defaults are Unsloth\'s and flags override them', () => {
  const argv = ['--model', 'm', '--data', 'd', '--output', 'o'];
  const { settings } = resolveSettings(argv, { defaults: FINETUNE_DEFAULTS });
  assert.equal(settings.lr, 2e-4);
  assert.equal(settings.checkpointing, 'full');
  assert.equal(settings.schedule.type, 'linear');
  assert.deepEqual(loraFromFlags({}), { r: 16, alpha: 16, dropout: 0, useRslora: false, targetModules: 'all-linear' });
  assert.deepEqual(loraFromFlags({ 'lora-r': '8', target: 'q_proj, v_proj' }).targetModules, ['q_proj', 'v_proj']);
  assert.equal(loraFromFlags({ 'lora-r': '8' }).alpha, 8, 'alpha follows r unless given');
  assert.equal(resolveSettings([...argv, '--lr', '1e-3'], { defaults: FINETUNE_DEFAULTS }).settings.lr, 1e-3);
});

for (const mode of ['lora', 'qlora'] as const) {
  test(`${mode}: trains the adapter, writes metrics.jsonl and a PEFT adapter that loads onto the base`, async () => {
    const dir = setup();
    const out = join(dir, 'out');
    const r = runCli(['finetune', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--output', out, '--seq-len', '10',
      '--max-steps', '3', '--batch-size', '4', '--lora-r', '4', '--lr', '1e-2', '--quiet', ...(mode === 'qlora' ? ['--qlora'] : [])]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /trained to step 3.*adapter/);
    const m = metrics(out);
    assert.equal(m.length, 3);
    for (const f of ['step', 'loss', 'lr', 'grad_norm', 'loss_scale', 'tokens_per_sec', 'mem_peak']) assert.ok(f in m[0], f);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 4);
    assert.equal(existsSync(join(out, 'model.safetensors')), false, 'the frozen base is not saved again');
    const sd = new k.SafetensorsFile(join(out, 'adapter_model.safetensors'));
    assert.ok(sd.names.some((n) => n.endsWith('q_proj.lora_B.weight')) && sd.names.some((n) => n.endsWith('down_proj.lora_A.weight')), 'all-linear targets');
    sd.close();
    // the trained adapter changes the base model's logits (B starts at zero, so any change is training's)
    const ids = k.tensor([[1, 2, 3, 4]], { dtype: 'int64' });
    const logits = async (adapter?: string): Promise<Float32Array> => {
      const p = await k.loadPretrained(join(dir, 'base'), { adapter });
      const l = k.noGrad(() => (p.model as k.CausalLM).forward({ inputIds: ids }).logits!.toFloat32Array());
      p.model.dispose();
      return l;
    };
    const [plain, adapted] = [await logits(), await logits(out)];
    assert.ok(plain.some((v, i) => Math.abs(v - adapted[i]) > 1e-4), 'adapter weights were trained and loaded');
    const g = runCli(['generate', '--model', join(dir, 'base'), '--adapter', out, '--prompt-ids', '1,2,3', '--max-new-tokens', '2', '--json']);
    assert.equal(g.status, 0, g.stderr);
  });
}

test('--full saves the whole model; bad settings are errors', () => {
  const dir = setup();
  const out = join(dir, 'full');
  const base = ['finetune', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--seq-len', '10', '--max-steps', '2', '--quiet'];
  const r = runCli([...base, '--output', out, '--full']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(out, 'model.safetensors')) && !existsSync(join(out, 'adapter_config.json')));
  assert.equal(metrics(out).length, 2);
  const both = runCli([...base, '--output', join(dir, 'x'), '--full', '--qlora']);
  assert.equal(both.status, 1);
  assert.match(both.stderr, /--full and --qlora exclude each other/);
  const rank = runCli([...base, '--output', join(dir, 'y'), '--lora-r', '0']);
  assert.equal(rank.status, 1);
  assert.match(rank.stderr, /--lora-r must be an integer >= 1, got 0/);
  const qt = runCli([...base, '--output', join(dir, 'z'), '--qlora', '--quant-type', 'int3']);
  assert.match(qt.stderr, /--quant-type must be nf4, fp4 or int8/);
});

test('the default --dtype is bf16 where the addon has a native bf16 GEMM, else fp32; said on stderr', () => {
  // the choice itself, for each path the addon can report (injected: this CPU has only one of them)
  assert.equal(finetuneDtype({ bf16Gemm: 'amx' }).dtype, 'bf16');
  assert.equal(finetuneDtype({ bf16Gemm: 'avx512bf16' }).dtype, 'bf16');
  assert.equal(finetuneDtype({ bf16Gemm: 'convert' }).dtype, 'fp32', 'widening bf16 to float32 is no faster than float32');
  assert.equal(finetuneDtype({ bf16Gemm: 'error: KESTREL_BF16_GEMM=amx: this CPU lacks amx_bf16' }).dtype, 'fp32');
  assert.equal(finetuneDtype(null).dtype, 'fp32', 'no addon: the reference backend');
  const dir = setup();
  const base = ['finetune', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--seq-len', '10', '--max-steps', '2', '--batch-size', '4', '--lora-r', '4', '--quiet'];
  // this machine's branch, as the addon reports it
  const here = finetuneDtype(loadNative()?.info() ?? null).dtype;
  const r = runCli([...base, '--output', join(dir, 'a')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`^dtype ${here} \\(default: `, 'm'));
  // the other branch on any CPU: KESTREL_BF16_GEMM=convert makes the addon report the converting path
  process.env.KESTREL_BF16_GEMM = 'convert';
  try {
    const c = runCli([...base, '--output', join(dir, 'b'), '--qlora']);
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stderr, /^dtype fp32 \(default: this CPU has no native bf16 matmul \(the bf16 path is 'convert'\)/m);
  } finally {
    delete process.env.KESTREL_BF16_GEMM;
  }
  // an explicit --dtype is not a default: no line; bf16 QLoRA trains and saves float32 adapters
  const e = runCli([...base, '--output', join(dir, 'c'), '--qlora', '--dtype', 'bf16']);
  assert.equal(e.status, 0, e.stderr);
  assert.doesNotMatch(e.stderr, /^dtype /m);
  const sd = new k.SafetensorsFile(join(dir, 'c', 'adapter_model.safetensors'));
  assert.ok(sd.names.length > 0 && sd.names.every((n) => sd.info(n).fileDtype === 'F32'), 'float32 adapters');
  sd.close();
  assert.ok(metrics(join(dir, 'c')).every((m) => Number.isFinite(m.loss)));
});
