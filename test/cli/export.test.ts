// `kestrel export`: --help; a ChatML model whose EOS (</s>) is not the template's end of turn
// (<|im_end|>) is exported with the warning said and tokenizer.ggml.eot_token_id written, and
// --ollama writes a Modelfile with the ChatML Go template and both stop tokens; `kestrel generate
// --model FILE.gguf` continues as transformers does; bad flags and a folder without a tokenizer are
// clear errors, and so is a family without a llama.cpp layout (qwen3); the Studio's model list describes the .gguf file from its header.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportCommand } from '../../src/cli/export.js';
import { GgufFile } from '../../src/gguf/reader.js';
import { listModelFolders } from '../../src/serve/model_folders.js';
import { ModelRegistry } from '../../src/serve/model_registry.js';
import { fixtureWithTokenizer, writeTinyTokenizer } from '../gguf/fixture_folder.js';
import { buildModel } from '../../src/models/registry.js';
import { savePretrained } from '../../src/models/load.js';
import { fixture } from '../fixtures.js';
import { runCli } from '../helpers.js';

const qwen2 = fixture('models', 'qwen2');
const CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

test('export --help lists the flags with defaults and an example', () => {
  const r = runCli(['export', '--help']);
  assert.equal(r.status, 0);
  for (const f of ['--model DIR', '--adapter DIR', '--type T', '--out FILE.gguf', '--ollama', 'default f16', 'example:']) assert.ok(r.stdout.includes(f), f);
});

test('EOS that disagrees with the chat template is said and written as eot_token_id; --ollama writes the Modelfile', { skip: qwen2.skip }, () => {
  const dir = fixtureWithTokenizer(qwen2.path, { special: { 1: '<s>', 2: '</s>', 3: '<|im_start|>', 4: '<|im_end|>' }, template: CHATML });
  const out = join(dir, 'chat.gguf');
  const r = runCli(['export', '--model', dir, '--type', 'q8_0', '--out', out, '--ollama', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /WARNING \(EOS\): EOS is "<\/s>" \(id 2\) but the chat template ends an assistant turn with "<\|im_end\|>" \(id 4\)/);
  assert.match(r.stdout, /wrote .*chat\.gguf \(qwen2, q8_0: .*Q8_0/);
  const g = new GgufFile(out);
  try {
    assert.equal(g.metadata.get('tokenizer.ggml.eos_token_id'), 2);
    assert.equal(g.metadata.get('tokenizer.ggml.eot_token_id'), 4);
    assert.equal(g.metadata.get('tokenizer.chat_template'), CHATML);
    assert.equal(g.metadata.get('general.file_type'), 7);
  } finally {
    g.close();
  }
  const modelfile = readFileSync(join(dir, 'Modelfile'), 'utf8');
  assert.match(modelfile, /^FROM \.\/chat\.gguf$/m);
  assert.ok(modelfile.includes('TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"""'));
  assert.match(modelfile, /^PARAMETER stop "<\|im_end\|>"\nPARAMETER stop "<\/s>"$/m);
  // the Studio lists the file with what its header says
  const listed = listModelFolders(dir).find((m) => m.name === 'chat.gguf');
  assert.deepEqual(listed && 'family' in listed ? [listed.family, listed.dtype, listed.templateSource, listed.contextLength] : listed, ['qwen2', 'gguf q8_0', 'tokenizer.chat_template', 128]);
});

test('generate --model FILE.gguf continues the golden prompt as transformers does; serve loads it', { skip: qwen2.skip }, async () => {
  const dir = fixtureWithTokenizer(qwen2.path);
  const out = join(dir, 'm.gguf');
  assert.equal(await exportCommand(['--model', dir, '--type', 'f32', '--out', out, '--quiet']), 0);
  const gen = JSON.parse(readFileSync(join(qwen2.path, 'golden.json'), 'utf8')).gen as { prompt_ids: number[][]; new_ids: number[][] };
  const r = runCli(['generate', '--model', out, '--prompt-ids', gen.prompt_ids[0].join(','), '--max-new-tokens', String(gen.new_ids[0].length), '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).generated_ids, gen.new_ids[0]);
  // kestrel serve --model FILE.gguf loads it the same way, named by the file
  const served = await ModelRegistry.load([out], []);
  try {
    assert.deepEqual(served.list().map((m) => m.id), ['m.gguf']);
  } finally {
    served.dispose();
  }
});

test('bad flags and a model folder without a tokenizer are errors that say what to do', { skip: qwen2.skip }, async () => {
  await assert.rejects(exportCommand(['--model', qwen2.path, '--type', 'q3_k', '--out', 'x.gguf']), /--type must be one of f32, f16, bf16, q8_0, q4_0, q4_k_m, got 'q3_k'/);
  await assert.rejects(exportCommand(['--model', qwen2.path, '--format', 'onnx', '--out', 'x.gguf']), /--format must be gguf/);
  await assert.rejects(exportCommand(['--model', qwen2.path]), /--model DIR and --out FILE\.gguf are required/);
  await assert.rejects(exportCommand(['--model', qwen2.path, '--out', '/tmp/never.gguf']), /has no tokenizer, and a GGUF file must carry one; pass --tokenizer DIR/);
  // a family the exporter has no llama.cpp layout for is refused by name
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-export-qwen3-'));
  const config = { model_type: 'qwen3', vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 16 };
  const model = buildModel(config, 'config.json');
  savePretrained(dir, { model, hfConfig: config });
  model.dispose();
  writeTinyTokenizer(dir, { vocabSize: 256, special: {} });
  await assert.rejects(exportCommand(['--model', dir, '--out', join(dir, 'x.gguf')]), /model_type 'qwen3' has no llama\.cpp architecture in Kestrel's exporter \(supported: llama, mistral, mixtral, qwen2, gemma, gemma2, phi3, gpt2\)/);
});
