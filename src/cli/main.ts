// `kestrel <command>`: one file per subcommand, each a thin call into the library.
import { chatCommand } from './chat.js';
import { doctor } from './doctor.js';
import { generateCommand } from './generate.js';
import { trainCommand } from './train.js';
import { finetuneCommand } from './finetune.js';
import { demoCommand } from './demo.js';
import { mergeCommand } from './merge.js';
import { exportCommand } from './export.js';
import { quantizeCommand } from './quantize.js';
import { embedCommand } from './embed.js';
import { embedTrainCommand } from './embed_train.js';
import { embedMineCommand } from './embed_mine.js';
import { serveCommand } from './serve.js';
import { transcribeCommand } from './transcribe.js';
import { preferenceCommand } from './preference.js';
import { grpoCommand } from './grpo.js';
import { launchCommand } from './launch.js';
import { consolidateCommand } from './consolidate.js';
import { speakCommand } from './speak.js';
import { studioCommand } from './studio.js';
import { ppoCommand } from './ppo.js';
import { selectDevice, takeDeviceFlag } from './device.js';
import { commandHelp } from './help.js';
import { version } from './doctor.js';
import { Interrupted } from '../train/interrupt.js';

const COMMANDS: Record<string, { about: string; run: (args: string[]) => Promise<number> }> = {
  demo: { about: 'the embedded end-to-end run: synthetic data, pretrain, fine-tune, accuracy before/after [--json]', run: demoCommand },
  doctor: { about: 'version, backend, CPU features, threads and a measured matmul GFLOP/s', run: doctor },
  generate: { about: 'continue a prompt: --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--json]', run: generateCommand },
  train: { about: 'train or fine-tune: --model DIR|config.json --data FILE --output DIR [--deepspeed ds.json]', run: trainCommand },
  finetune: { about: 'LoRA/QLoRA/full fine-tuning with Unsloth-like defaults: --model DIR --data FILE --output DIR [--lora-r 16] [--qlora] [--full]', run: finetuneCommand },
  quantize: { about: 'int8/q4 weights with AWQ calibration: --model DIR --calib data.jsonl --format int8|q4 --out DIR [--heldout FILE]', run: quantizeCommand },
  merge: { about: 'fold a LoRA adapter into its base: --model DIR --adapter DIR --out DIR [--dtype fp32|bf16|fp16]', run: mergeCommand },
  export: { about: 'a GGUF file for llama.cpp / Ollama: --model DIR [--adapter DIR] --type f32|f16|bf16|q8_0|q4_0|q4_k_m --out FILE.gguf [--ollama]', run: exportCommand },
  launch: { about: 'run a command as N ranks: -n N -- kestrel train ... on this machine, --hostfile FILE through mpirun across machines', run: launchCommand },
  consolidate: { about: 'a sharded (ZeRO) checkpoint as a plain HF folder: CKPT --out DIR', run: consolidateCommand },
  chat: { about: 'interactive chat with a model folder: --model DIR [--system TEXT]', run: chatCommand },
  embed: { about: 'sentence embeddings: --model DIR --input texts.jsonl --output vectors.jsonl', run: embedCommand },
  'embed-train': { about: 'contrastive training of an embedding model: --model DIR --data FILE --output DIR [--loss mnrl] [--lora]', run: embedTrainCommand },
  'embed-mine': { about: 'hard negatives for {anchor, positive} rows: --model DIR --data FILE --output FILE [--num-negatives 3]', run: embedMineCommand },
  studio: { about: 'the Studio web app (chat, templates, arena) over the serve API: [--models DIR] [--port 7860] [--host H --token T]', run: studioCommand },
  serve: { about: 'OpenAI-compatible HTTP server: --model DIR [--model NAME=DIR ...] [--adapter NAME=DIR] [--port 8000] [--api-key KEY]', run: serveCommand },
  transcribe: { about: 'speech to text with a Whisper folder: --model DIR FILE... [--language en] [--task transcribe|translate] [--json]', run: transcribeCommand },
  dpo: { about: 'Direct Preference Optimization on {prompt, chosen, rejected}: --model DIR --data FILE --output DIR [--lora] [--beta 0.1]', run: (a) => preferenceCommand('dpo', a) },
  orpo: { about: 'ORPO (SFT + odds-ratio preference, no reference): --model DIR --data FILE --output DIR [--lora]', run: (a) => preferenceCommand('orpo', a) },
  simpo: { about: 'SimPO (length-normalised, margin, no reference): --model DIR --data FILE --output DIR [--lora]', run: (a) => preferenceCommand('simpo', a) },
  kto: { about: 'KTO on unpaired {prompt, completion, label} data: --model DIR --data FILE --output DIR [--lora]', run: (a) => preferenceCommand('kto', a) },
  grpo: { about: 'GRPO with TypeScript reward functions: --model DIR --data prompts.jsonl --rewards rewards.ts --output DIR [--lora]', run: grpoCommand },
  ppo: { about: 'PPO RLHF (DeepSpeed-Chat step 3): --actor-model DIR --critic-model DIR --reward-model DIR --data prompts.jsonl --output DIR [--lora]', run: ppoCommand },
  rm: { about: 'train a reward model (Bradley-Terry on pairs): --model DIR --data FILE --output DIR [--lora]', run: (a) => preferenceCommand('rm', a) },
  speak: { about: 'text to speech with a finetune --task tts folder: --model DIR --codec DIR "text" --output out.wav [--temperature T]', run: speakCommand },
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
  try {
    if (name === 'launch') return await cmd.run(rest);
    const { rest: args, device } = takeDeviceFlag(rest);
    if (name !== 'doctor') selectDevice(device, (line) => process.stderr.write(line + '\n'));
    return await cmd.run(args);
  } catch (e) {
    process.stderr.write(`kestrel ${name}: ${(e as Error).message}\n`);
    return e instanceof Interrupted ? 130 : 1;
  }
}
