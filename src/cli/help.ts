// `kestrel <command> --help`: each command's flags with their defaults, and an example. One table
// per command, next to the flag list each command parses (train.ts, finetune.ts, ...).
import { DEFAULT_SETTINGS as D } from '../train/run_config.js';
import { SERVE_DEFAULTS as S } from './serve.js';
import { STUDIO_DEFAULTS as SD } from './studio.js';

type Flag = [name: string, about: string];

interface CommandHelp {
  usage: string;
  flags: Flag[];
  example: string;
}

const DEVICE: Flag = ['--device auto|cuda|cpu', 'where tensors live (default auto: the GPU when one is usable, else the CPU)'];
const GENERATION: Flag[] = [
  ['--model DIR', 'an HF model folder (required)'],
  ['--tokenizer DIR', 'tokenizer folder (default: the model folder)'],
  ['--adapter DIR', 'a PEFT LoRA adapter applied on load'],
  ['--max-new-tokens N', "default: generation_config.json's, else 20"],
  ['--temperature T', '0 = greedy (default: generation_config.json, else 1)'],
  ['--top-p P / --top-k K / --min-p P', 'sampling filters (defaults 1 / 50 / off)'],
  ['--repetition-penalty R', 'default 1 (off)'],
  ['--seed N', 'sampling seed (default 0)'],
  DEVICE,
];

const TRAIN: Flag[] = [
  ['--model DIR|config.json', 'a pretrained HF folder, or a config.json for a random init (required)'],
  ['--data FILE', 'JSONL / JSON / Parquet, repeatable (required)'],
  ['--output DIR', 'metrics.jsonl, checkpoint-N/ and the final model (required)'],
  ['--format F', `auto|text|pretokenized|alpaca|chat|sharegpt (default ${D.format})`],
  ['--max-steps N', `optimizer steps (default ${D.maxSteps})`],
  ['--seq-len N', `default ${D.seqLen}`],
  ['--batch-size N / --grad-accum N', `micro-batch rows and micro-batches per step (defaults ${D.batchSize} / ${D.gradAccum})`],
  ['--lr X / --weight-decay X', `defaults ${D.lr} / ${D.weightDecay}`],
  ['--schedule S / --warmup N', `constant|linear|cosine|WarmupLR|WarmupDecayLR|WarmupCosineLR (default ${D.schedule.type}, warm-up ${D.schedule.warmup})`],
  ['--clip X', `gradient-norm clipping (default ${D.clip})`],
  ['--optimizer-in-backward', 'update each weight as its gradient completes and free it (needs --clip 0, --grad-accum 1, no fp16)'],
  ['--dtype fp32|bf16|fp16', `compute precision (default ${D.dtype}; fp16 with dynamic loss scaling)`],
  ['--checkpointing none|full|selective', `activation checkpointing (default ${D.checkpointing})`],
  ['--eval-fraction X / --eval-every N', `held-out share and period (defaults ${D.evalFraction} / ${D.evalEvery})`],
  ['--save-every N / --keep-last N', `checkpoint period and how many to keep (defaults ${D.saveEvery} / ${D.keepLast})`],
  ['--resume latest|DIR', 'continue from a checkpoint'],
  ['--seed N', `default ${D.seed}`],
  ['--skip-bad-lines', 'skip (and count) unreadable data lines instead of stopping'],
  ['--config run.yaml|json', 'settings file (flags override it)'],
  ['--deepspeed ds_config.json', "DeepSpeed's batch sizes, precision, optimizer, scheduler, clipping, checkpointing"],
  ['--tokenizer DIR', 'tokenizer folder (default: the model folder)'],
  ['--quiet', 'no progress bar'],
  ['--profile', 'time every kernel and op backward of steps 2-4 (CPU) and print the top ones with GFLOP/s and % of peak'],
  DEVICE,
];

export const HELP: Record<string, CommandHelp> = {
  demo: {
    usage: 'kestrel demo [--json] [--steps N] [--finetune full|lora|qlora] [--output DIR]',
    flags: [['--json', 'end with one JSON line of the results'], ['--steps N', 'pretraining steps (default 600)'],
      ['--finetune full|lora|qlora', 'how the fine-tune phase trains (default full)'], ['--output DIR', 'where the model folder goes (default a temp dir)'], DEVICE],
    example: 'kestrel demo --finetune qlora',
  },
  doctor: {
    usage: 'kestrel doctor [--json]',
    flags: [['--json', 'one JSON object instead of the table']],
    example: 'kestrel doctor',
  },
  generate: {
    usage: 'kestrel generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--json] [sampling flags]',
    flags: [['--prompt TEXT', 'the text to continue'], ['--prompt-ids 1,2,3', 'token ids instead of text'], ['--json', 'print ids and text as JSON'], ...GENERATION],
    example: 'kestrel generate --model ./SmolLM2-135M-Instruct --prompt "The capital of France is" --max-new-tokens 20',
  },
  chat: {
    usage: 'kestrel chat --model DIR [--system TEXT] [--template NAME] [sampling flags]',
    flags: [['--system TEXT', 'system prompt'], ['--template NAME', "a built-in chat template (chatml, llama3, ...) instead of the model folder's"], ...GENERATION],
    example: 'kestrel chat --model ./SmolLM2-135M-Instruct --system "You are terse."',
  },
  train: {
    usage: 'kestrel train --model DIR|config.json --data FILE --output DIR [flags]',
    flags: TRAIN,
    example: 'kestrel train --model ./config.json --data data.jsonl --output out/ --max-steps 1000 --seq-len 512 --dtype bf16 --device cuda',
  },
  finetune: {
    usage: 'kestrel finetune --model DIR --data FILE --output DIR [LoRA flags] [train flags]',
    flags: [
      ['--lora-r N / --lora-alpha N', 'adapter rank and alpha (defaults 16 / r)'],
      ['--lora-dropout X', 'default 0'],
      ['--target all-linear|q_proj,v_proj,...', 'which Linear layers get adapters (default all-linear: every one but the head)'],
      ['--rslora', 'rank-stabilised scaling alpha / sqrt(r)'],
      ['--qlora', 'a 4-bit (NF4) frozen base'],
      ['--quant-type nf4|fp4|int8 / --double-quant', 'the base format for --qlora (default nf4, no double quantization)'],
      ['--full', 'train every weight instead of adapters'],
      ['(train flags)', 'as kestrel train, with lr 2e-4, linear decay after 5 warm-up steps and --checkpointing full by default; --dtype defaults to bf16 where the CPU multiplies bf16 natively (AMX-BF16 / AVX512_BF16), with the frozen base stored in bf16'],
      DEVICE,
    ],
    example: 'kestrel finetune --model ./SmolLM2-135M --data chat.jsonl --output adapter/ --qlora --max-steps 200',
  },
  serve: {
    usage: 'kestrel serve --model [NAME=]DIR [--model [NAME=]DIR ...] [--adapter NAME=DIR ...] [--port N] [--host H] [--api-key KEY] [--max-queue N]',
    flags: [
      ['--model [NAME=]DIR', 'an HF model folder with a tokenizer, served as NAME (default: the folder name); repeat for several (required)'],
      ['--adapter NAME=DIR', 'a PEFT LoRA adapter on the first --model, served as NAME; repeatable'],
      ['--port N', `default ${S.port} (0 picks a free port; the URL is printed)`],
      ['--host H', `interface to bind (default ${S.host}); any other than loopback needs --api-key`],
      ['--api-key KEY', 'require Authorization: Bearer KEY on /v1/* (default: $KESTREL_API_KEY, else none)'],
      ['--max-queue N', `requests that may wait while one generates (default ${S.maxQueue}); beyond it 429 with Retry-After`],
      ['--max-body-bytes N', `largest request body (default ${S.maxBodyBytes})`],
      DEVICE,
    ],
    example: 'kestrel serve --model ./SmolLM2-135M-Instruct --adapter french=./adapter --port 8000',
  },
  studio: {
    usage: 'kestrel studio [--models DIR] [--data DIR] [--port N] [--host H --token TOKEN]',
    flags: [
      ['--models DIR', `the folder whose subfolders (HF model folders) the Studio lists and loads (default ${SD.models}: the current folder)`],
      ['--data DIR', `the Studio's own folder: uploaded datasets and fine-tuning jobs (default ${SD.data})`],
      ['--max-upload-bytes N', `largest dataset upload (default ${SD.maxUploadBytes}; 413 beyond)`],
      ['--port N', `default ${SD.port} (0 picks a free port; the URL is printed)`],
      ['--host H', `interface to bind (default ${SD.host}); any other than loopback needs --token`],
      ['--token TOKEN', 'require Authorization: Bearer TOKEN on every API request (8+ characters; the printed URL passes it to the page)'],
      ['--max-body-bytes N', `largest request body (default ${S.maxBodyBytes})`],
      DEVICE,
    ],
    example: 'kestrel studio --models ~/models --port 7860',
  },
  merge: {
    usage: 'kestrel merge --model DIR --adapter DIR --out DIR [--dtype fp32|bf16|fp16]',
    flags: [['--model DIR', 'the base model folder'], ['--adapter DIR', 'the PEFT adapter'], ['--out DIR', 'the merged HF folder'], ['--dtype fp32|bf16|fp16', 'saved precision (default fp32)'], DEVICE],
    example: 'kestrel merge --model ./base --adapter ./adapter --out ./merged --dtype bf16',
  },
};

/** The --help text of a command. */
export function commandHelp(name: string): string {
  const h = HELP[name];
  const width = Math.max(...h.flags.map(([f]) => f.length));
  return `usage: ${h.usage}\n\nflags:\n${h.flags.map(([f, a]) => `  ${f.padEnd(width)}  ${a}`).join('\n')}\n\nexample:\n  ${h.example}\n`;
}
