// `kestrel <command>`: one file per subcommand, each a thin call into the library. The library and
// a command's module are imported when it runs, so `--help`, `--version` and a mistyped command load neither.
import { commandHelp } from './help.js';
import type { PreferenceMethod } from './preference.js';
import { version } from './version.js';

type Command = (args: string[]) => Promise<number>;

/** dpo, orpo, simpo, kto and rm: one command module, the method its first argument. */
const preference = (method: PreferenceMethod) => async (): Promise<Command> => {
  const { preferenceCommand } = await import('./preference.js');
  return (args) => preferenceCommand(method, args);
};

const COMMANDS: Record<string, { about: string; load: () => Promise<Command> }> = {
  demo: { about: 'the embedded end-to-end run: synthetic data, pretrain, fine-tune, accuracy before/after [--json]', load: async () => (await import('./demo.js')).demoCommand },
  doctor: { about: 'version, backend, CPU features, threads and a measured matmul GFLOP/s', load: async () => (await import('./doctor.js')).doctor },
  generate: { about: 'continue a prompt: --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--json]', load: async () => (await import('./generate.js')).generateCommand },
  train: { about: 'train or fine-tune: --model DIR|config.json --data FILE --output DIR [--deepspeed ds.json]', load: async () => (await import('./train.js')).trainCommand },
  finetune: { about: 'LoRA/QLoRA/full fine-tuning with Unsloth-like defaults: --model DIR --data FILE --output DIR [--lora-r 16] [--qlora] [--full]', load: async () => (await import('./finetune.js')).finetuneCommand },
  quantize: { about: 'int8/q4 weights with AWQ calibration: --model DIR --calib data.jsonl --format int8|q4 --out DIR [--heldout FILE]', load: async () => (await import('./quantize.js')).quantizeCommand },
  merge: { about: 'fold a LoRA adapter into its base: --model DIR --adapter DIR --out DIR [--dtype fp32|bf16|fp16]', load: async () => (await import('./merge.js')).mergeCommand },
  export: { about: 'a GGUF file for llama.cpp / Ollama: --model DIR [--adapter DIR] --type f32|f16|bf16|q8_0|q4_0|q4_k_m --out FILE.gguf [--ollama]', load: async () => (await import('./export.js')).exportCommand },
  launch: { about: 'run a command as N ranks: -n N -- kestrel train ... on this machine, --hostfile FILE through mpirun across machines', load: async () => (await import('./launch.js')).launchCommand },
  consolidate: { about: 'a sharded (ZeRO) checkpoint as a plain HF folder: CKPT --out DIR', load: async () => (await import('./consolidate.js')).consolidateCommand },
  chat: { about: 'interactive chat with a model folder: --model DIR [--system TEXT]', load: async () => (await import('./chat.js')).chatCommand },
  embed: { about: 'sentence embeddings: --model DIR --input texts.jsonl --output vectors.jsonl', load: async () => (await import('./embed.js')).embedCommand },
  'embed-train': { about: 'contrastive training of an embedding model: --model DIR --data FILE --output DIR [--loss mnrl] [--lora]', load: async () => (await import('./embed_train.js')).embedTrainCommand },
  'embed-mine': { about: 'hard negatives for {anchor, positive} rows: --model DIR --data FILE --output FILE [--num-negatives 3]', load: async () => (await import('./embed_mine.js')).embedMineCommand },
  studio: { about: 'the Studio web app (chat, templates, arena) over the serve API: [--models DIR] [--port 7860] [--host H --token T]', load: async () => (await import('./studio.js')).studioCommand },
  serve: { about: 'OpenAI-compatible HTTP server: --model DIR [--model NAME=DIR ...] [--adapter NAME=DIR] [--port 8000] [--api-key KEY]', load: async () => (await import('./serve.js')).serveCommand },
  transcribe: { about: 'speech to text with a Whisper folder: --model DIR FILE... [--language en] [--task transcribe|translate] [--json]', load: async () => (await import('./transcribe.js')).transcribeCommand },
  dpo: { about: 'Direct Preference Optimization on {prompt, chosen, rejected}: --model DIR --data FILE --output DIR [--lora] [--beta 0.1]', load: preference('dpo') },
  orpo: { about: 'ORPO (SFT + odds-ratio preference, no reference): --model DIR --data FILE --output DIR [--lora]', load: preference('orpo') },
  simpo: { about: 'SimPO (length-normalised, margin, no reference): --model DIR --data FILE --output DIR [--lora]', load: preference('simpo') },
  kto: { about: 'KTO on unpaired {prompt, completion, label} data: --model DIR --data FILE --output DIR [--lora]', load: preference('kto') },
  grpo: { about: 'GRPO with TypeScript reward functions: --model DIR --data prompts.jsonl --rewards rewards.ts --output DIR [--lora]', load: async () => (await import('./grpo.js')).grpoCommand },
  ppo: { about: 'PPO RLHF (DeepSpeed-Chat step 3): --actor-model DIR --critic-model DIR --reward-model DIR --data prompts.jsonl --output DIR [--lora]', load: async () => (await import('./ppo.js')).ppoCommand },
  rm: { about: 'train a reward model (Bradley-Terry on pairs): --model DIR --data FILE --output DIR [--lora]', load: preference('rm') },
  speak: { about: 'text to speech with a finetune --task tts folder: --model DIR --codec DIR "text" --output out.wav [--temperature T]', load: async () => (await import('./speak.js')).speakCommand },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(11)} ${c.about}`);
  return `usage: kestrel <command> [--device auto|cuda|cpu] [options]   (kestrel <command> --help for its flags; kestrel --version)\n\ncommands:\n${lines.join('\n')}\n\n--device: where tensors live (auto, the default: the GPU when one is usable, else the CPU; KESTREL_BACKEND=cpu|cuda|ref also sets it)\n`;
}

export async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`kestrel ${version()}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`kestrel: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  // launch passes everything after -- to its ranks (their --help and --device too)
  const own = name === 'launch' && rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(commandHelp(name));
    return 0;
  }
  // the whole library first: its index installs what modules add to others' classes (autograd's
  // Tensor.backward, infer's model.generate/stream), which a command's own imports may not reach
  await import('../index.js');
  const [{ selectDevice, takeDeviceFlag }, { Interrupted }] = await Promise.all([import('./device.js'), import('../train/interrupt.js')]);
  try {
    const command = await cmd.load();
    if (name === 'launch') return await command(rest);
    const { rest: args, device } = takeDeviceFlag(rest);
    if (name !== 'doctor') selectDevice(device, (line) => process.stderr.write(line + '\n'));
    return await command(args);
  } catch (e) {
    process.stderr.write(`kestrel ${name}: ${(e as Error).message}\n`);
    return e instanceof Interrupted ? 130 : 1;
  }
}
