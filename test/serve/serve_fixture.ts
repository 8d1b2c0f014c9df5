// What the serving tests run against: a tiny random Llama with the demo's byte-level tokenizer
// (eos <|im_end|>; its ChatML template extended to list the names of the request's tools in a
// system turn, so tests can see tools reach the template) and a LoRA adapter for it with non-zero weights, written to a
// temp folder; and a `kestrel serve` process on a free port whose printed URL the tests use.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import * as k from '../../src/index.js';
import { writeByteTokenizer, BYTE_VOCAB } from '../../src/demo/byte_tokenizer.js';
import { decoderConfig } from '../../src/models/registry.js';
import { injectLora, saveAdapter } from '../../src/lora/peft.js';
import { normal_ } from '../../src/nn/init.js';
import { type CliProcess, startCli, waitFor } from '../helpers.js';

export const CONTEXT = 160;
const HF_CONFIG = {
  model_type: 'llama', vocab_size: BYTE_VOCAB, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: CONTEXT, eos_token_id: 258,
};
const TOOLS_TURN = "{% if tools %}{{ '<|im_start|>system\\nTools:' }}{% for t in tools %}{{ ' ' + t.function.name }}{% endfor %}{{ '<|im_end|>\\n' }}{% endif %}";
const LORA = { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] };

/** The model folder and an adapter folder beside it (under one temp dir). */
export function writeServeFixture(): { root: string; modelDir: string; adapterDir: string } {
  const root = mkdtempSync(join(tmpdir(), 'kestrel-serve-'));
  const modelDir = join(root, 'tiny');
  const adapterDir = join(root, 'adapter');
  k.manualSeed(3);
  // initializer_range 0.5: logits spread enough that greedy choices are far from ties
  const model = new k.CausalLM(decoderConfig({ ...HF_CONFIG, initializer_range: 0.5 }, 'config.json'));
  k.savePretrained(modelDir, { model, hfConfig: HF_CONFIG });
  writeByteTokenizer(modelDir);
  const configFile = join(modelDir, 'tokenizer_config.json');
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as { chat_template: string };
  config.chat_template = TOOLS_TURN + config.chat_template;
  writeFileSync(configFile, JSON.stringify(config));
  injectLora(model, LORA);
  // PEFT initialises B to zero (the adapter starts as a no-op); give it weights that change the output
  for (const [name, p] of model.namedParameters()) if (name.includes('lora_B')) normal_(p, 0.5);
  saveAdapter(model, adapterDir, LORA, { baseModel: modelDir });
  model.dispose();
  return { root, modelDir, adapterDir };
}

export interface RunningServer {
  url: string;
  cli: CliProcess;
  client(apiKey?: string): OpenAI;
  stop(): Promise<void>;
}

/** Starts `kestrel serve` with args on a free port and waits for its URL. */
export function startServer(args: string[]): Promise<RunningServer> {
  return startListening(['serve', '--port', '0', ...args], /listening on (\S+)/);
}

/** Starts a kestrel command that prints its URL (captured by `printed`) and waits for it. */
export async function startListening(args: string[], printed: RegExp): Promise<RunningServer> {
  const cli = startCli(args, 120_000);
  let exited = false;
  cli.exited.then(() => (exited = true), () => (exited = true));
  let stdout = '';
  cli.child.stdout!.on('data', (d: Buffer) => (stdout += d));
  try {
    await waitFor(() => exited || printed.test(stdout), `kestrel ${args[0]} to print its URL`, 60_000);
  } catch (e) {
    cli.child.kill('SIGKILL'); // a test that gives up leaves no server behind
    throw e;
  }
  const url = printed.exec(stdout)?.[1];
  if (!url) throw new Error(`kestrel ${args[0]} exited before listening: ${(await cli.exited).stderr}`);
  return {
    url, cli,
    client: (apiKey = 'none') => new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 60_000 }),
    stop: async () => {
      cli.child.kill('SIGTERM');
      await cli.exited;
    },
  };
}

export const removeFixture = (root: string): void => rmSync(root, { recursive: true, force: true });
