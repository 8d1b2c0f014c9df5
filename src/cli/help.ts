// `kestrel <command> --help`: each command's flags with their defaults, and an example. One table
// per command, next to the flag list each command parses (train.ts, finetune.ts, ...).
import { DEFAULT_SETTINGS as D } from '../train/run_config.js';
import { EXPORT_DEFAULTS as XD, SERVE_DEFAULTS as S, STUDIO_DEFAULTS as SD } from './defaults.js';

/** The engine flags of serve and studio. */
const ENGINE_HELP: [string, string][] = [
  ['--engine batch|serial', `batch: continuous batching over a paged KV cache; serial: one request at a time (default ${S.engine})`],
  ['--kv-cache-mb N', `the paged KV cache of each model, float32, in MB (default ${S.kvCacheMb}); a request waits until its prompt + max_tokens fit`],
  ['--block-size N', `tokens per KV block (default ${S.blockSize})`],
  ['--prefill-chunk N', `prompt tokens per step over all new requests, so long prompts never stall the streams (default ${S.prefillChunk})`],
  ['--max-batch N', `sequences (choices) generating at once (default ${S.maxBatch})`],
];

type Flag = [name: string, about: string];

interface CommandHelp {
  usage: string;
  flags: Flag[];
  example: string;
}

const DEVICE: Flag = ['--device auto|cuda|cpu', 'where tensors live (default auto: the GPU when one is usable, else the CPU)'];
const GENERATION: Flag[] = [
  ['--model DIR', 'an HF model folder, or a .gguf file (config, tokenizer and weights read from it) (required)'],
  ['--tokenizer DIR', 'tokenizer folder (default: the model folder)'],
  ['--adapter DIR', 'a PEFT LoRA adapter applied on load'],
  ['--quant bf16|int8|q4', 'store every Linear (and the head) as bf16, int8 (per-row scales) or q4 (groups of 32) for decoding at memory bandwidth (default: the checkpoint as loaded)'],
  ['--max-new-tokens N', "default: generation_config.json's, else 20"],
  ['--temperature T', '0 = greedy (default: generation_config.json, else 1)'],
  ['--top-p P / --top-k K / --min-p P', 'sampling filters (defaults 1 / 50 / off)'],
  ['--repetition-penalty R', 'default 1 (off)'],
  ['--seed N', 'sampling seed (default 0)'],
  ['--kv-dtype fp32|bf16', "the KV cache's dtype (default: the activations', fp32 for float and quantized models); bf16 halves its memory and what decoding reads per token at long contexts, moving logits within its rounding"],
  DEVICE,
];

const EMBED_MODEL: Flag[] = [
  ['--pooling MODE[,MODE...]', "cls|max|mean|mean_sqrt_len_tokens|weightedmean|lasttoken; several are concatenated as sentence-transformers does (default: the sentence-transformers folder's, else mean)"],
  ['--normalize', 'L2-normalise the embeddings (adds a Normalize module)'],
  ['--max-seq-length N', 'tokens per text (default: sentence_bert_config.json, else the tokenizer, else 512)'],
  ['--quiet', 'no progress bar'],
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
  ['--optimizer-in-backward', "update each weight as its gradient completes and free it (default for train: on where --clip 0, --grad-accum 1, no fp16 and one process; this flag makes the others an error)"],
  ['--dtype fp32|bf16|fp16', `compute precision (default ${D.dtype}; fp16 with dynamic loss scaling)`],
  ['--checkpointing none|full|selective', `activation checkpointing (default ${D.checkpointing})`],
  ['--checkpoint-layers N', 'with --checkpointing full: only the first N decoder layers recompute, the others keep their activations (default: every layer)'],
  ['--eval-fraction X / --eval-every N', `held-out share and period (defaults ${D.evalFraction} / ${D.evalEvery})`],
  ['--save-every N / --keep-last N', `checkpoint period and how many to keep (defaults ${D.saveEvery} / ${D.keepLast})`],
  ['--resume latest|DIR', 'continue from a checkpoint'],
  ['--seed N', `default ${D.seed}`],
  ['--skip-bad-lines', 'skip (and count) unreadable data lines instead of stopping'],
  ['--config run.yaml|json', 'settings file (flags override it)'],
  ['--deepspeed ds_config.json', "DeepSpeed's batch sizes, precision, optimizer, scheduler, clipping, checkpointing, zero_optimization (stages 0-3, reduce_bucket_size, stage3_param_persistence_threshold / prefetch_bucket_size / max_live_parameters); \"auto\" values take these flags"],
  ['--attention-sparsity FILE.json', "block-sparse attention in every layer: a DeepSpeed sparse_attention object (mode fixed|variable|bigbird|bslongformer|local_sliding_window|dense, block, ...; default none = dense); saved as sparsity.json beside the model (ds_config sparse_attention sets it too)"],
  ['--tokenizer DIR', 'tokenizer folder (default: the model folder)'],
  ['--nproc N', 'train data-parallel on N rank processes of this machine (kestrel launch -n N -- kestrel train ...; default 1)'],
  ['--zero-stage 0|1|2|3', 'with --nproc: 0 all-reduces gradients, 1 also partitions the optimizer state over the ranks, 2 also the gradients, 3 also the decoder layers\' parameters (gathered per layer around forward and backward, read in place from the other ranks on one machine; the final model is a sharded HF folder) (default 0; ds_config zero_optimization.stage sets it)'],
  ['--expert-parallel M', `with --nproc N (M divides N) and a MoE model: each layer's experts split over groups of M ranks, tokens sent to them by all-to-all; the dense part data-parallel under --zero-stage (default ${D.expertParallel}: off; no checkpoints while split, the final model is saved whole)`],
  ['--quiet', 'no progress bar'],
  ['--profile', 'time every kernel and op backward of steps 2-4 (CPU) and print the top ones with GFLOP/s and % of peak'],
  DEVICE,
];

const PREFERENCE: Flag[] = [
  ['--model DIR', 'an HF model folder with a tokenizer (rm: a causal LM gets a fresh 1-label score head, or a *ForSequenceClassification folder) (required)'],
  ['--data FILE', '{prompt, chosen, rejected} as strings or message lists, or HH-RLHF {chosen, rejected} transcripts (kto: {prompt, completion, label}); JSONL / JSON / Parquet (required)'],
  ['--output DIR', 'metrics.jsonl (loss and TRL\'s rewards/*, logps/* names), eval.jsonl, checkpoint-N/, the adapter or model (required)'],
  ['--beta X', 'dpo 0.1, orpo 0.1 (lambda), kto 0.1, simpo 2.0 (defaults)'],
  ['--loss-type T', `dpo: ${'sigmoid|ipo|hinge|robust|exo_pair|bco_pair|nca_pair|sppo_hard|apo_zero|apo_down|sigmoid_norm|discopop'} (default sigmoid); simpo: simpo|sigmoid|hinge|ipo (CPO's, default simpo); kto: kto|apo_zero_unpaired (default kto)`],
  ['--desirable-weight X / --undesirable-weight X', 'kto: per-label loss weights (defaults 1 / 1)'],
  ['--label-smoothing X', 'dpo robust / exo_pair, simpo (default 0)'],
  ['--reference-free', 'dpo without a reference model (reference log-probs 0); default (dpo, kto): computed once before training'],
  ['--simpo-gamma X / --cpo-alpha X', 'SimPO target margin (default 0.5) and CPO NLL weight (default 0)'],
  ['--margin X', 'rm: margin inside the Bradley-Terry loss (default 0)'],
  ['--chat-template NAME', 'template for message-list data (default the tokenizer\'s)'],
  ['--lora / --qlora', 'train LoRA adapters (QLoRA: on an NF4 base) and save the adapter; rm also trains its score head in full and saves the merged reward model'],
  ['--lora-r N / --lora-alpha N / --target ...', 'as kestrel finetune (defaults 16 / r / all-linear)'],
  ['(train flags)', 'as kestrel train: --max-steps, --batch-size (pairs), --grad-accum, --lr, --seq-len, --eval-fraction, --eval-every, --save-every, --resume, --dtype, ...'],
  DEVICE,
];

const preferenceHelp = (method: string, example: string): CommandHelp => ({
  usage: `kestrel ${method} --model DIR --data FILE --output DIR [--lora] [method flags] [train flags]`, flags: PREFERENCE, example,
});

export const HELP: Record<string, CommandHelp> = {
  grpo: {
    usage: 'kestrel grpo --model DIR --data prompts.jsonl (--rewards FILE | --reward correctness) --output DIR [--lora] [GRPO flags] [train flags]',
    flags: [
      ['--model DIR', 'an HF causal LM folder with a tokenizer (required)'],
      ['--data FILE', '{prompt, ...} records, prompt as text or messages; the other fields go to the reward functions (required)'],
      ['--rewards FILE', 'a .ts/.js module: every exported function ({ prompts, completions, records }) => number[] is a reward (repeatable)'],
      ['--reward NAME', 'a built-in reward: correctness (first line == the record\'s "answer") (repeatable)'],
      ['--output DIR', 'metrics.jsonl (reward, reward_std, completion_length, rewards/<fn>, entropy, kl, clip_ratio/*), checkpoints, the adapter or model (required)'],
      ['--num-generations G', 'completions per prompt (default 8); --batch-size counts prompts'],
      ['--max-new-tokens N / --max-prompt-length N', 'defaults 64 / 512'],
      ['--temperature T / --top-p P', 'sampling (defaults 1 / 1)'],
      ['--beta X', 'KL coefficient to the reference, the base with adapters disabled: needs --lora (default 0, as TRL)'],
      ['--epsilon X', 'clip range (default 0.2)'],
      ['--loss-type T', 'dapo|grpo|bnpo|dr_grpo (default dapo, as TRL 1.13)'],
      ['--scale-rewards S', 'group|batch|none (default group)'],
      ['--lora / --qlora, --lora-r N ...', 'as kestrel dpo'],
      ['(train flags)', 'as kestrel train: --max-steps, --batch-size, --grad-accum, --lr, --save-every, --resume, --dtype, ...'],
      DEVICE,
    ],
    example: 'kestrel grpo --model ./SmolLM2-135M-Instruct --data math.jsonl --reward correctness --rewards format.ts --output grpo/ --lora --num-generations 8 --max-new-tokens 32',
  },
  ppo: {
    usage: 'kestrel ppo --actor-model DIR --critic-model DIR --reward-model DIR --data prompts.jsonl --output DIR [--lora] [PPO flags] [train flags]',
    flags: [
      ['--actor-model DIR', 'the policy: an HF causal LM folder with a tokenizer, usually the SFT model (required)'],
      ['--critic-model DIR', 'the value model: a *ForSequenceClassification folder (DeepSpeed-Chat starts from the reward model) or a causal LM (fresh value head) (required)'],
      ['--reward-model DIR', 'a trained reward model (*ForSequenceClassification, num_labels 1, as kestrel rm saves); scored at the last completion token'],
      ['--rewards FILE', 'a .ts/.js module of reward functions, added to the reward model\'s score (repeatable; alone it replaces the reward model)'],
      ['--data FILE', '{prompt, ...} records, prompt as text or messages (required)'],
      ['--output DIR', 'metrics.jsonl (reward, kl, entropy, clipfrac, value_clipfrac, value_loss, policy_loss, approxkl, non_score_reward, rlhf_reward, completion_length), checkpoints, the actor (an adapter under --lora) and critic/ (required)'],
      ['--lora / --qlora, --lora-r N ...', 'adapters on actor and critic (the critic\'s score head trains in full); the reference is the actor\'s base with adapters disabled. Without them the reference is a second frozen copy of the actor'],
      ['--ppo-epochs N', 'passes over each rollout batch (default 4, TRL; DeepSpeed-Chat 1)'],
      ['--num-mini-batches N', 'optimizer updates per pass; --batch-size counts prompts per rollout batch (default 1)'],
      ['--kl-coef X', 'per-token KL penalty to the reference (default 0.05, TRL)'],
      ['--cliprange X / --cliprange-value X', 'ratio and value clipping (defaults 0.2 / 0.2)'],
      ['--vf-coef X', 'value loss weight (default 0.1, TRL)'],
      ['--gamma X / --lam X', 'GAE discount and lambda (defaults 1 / 0.95)'],
      ['--max-new-tokens N / --max-prompt-length N', 'defaults 64 / 512'],
      ['--temperature T / --top-p P', 'sampling (defaults 1 / 1)'],
      ['(train flags)', 'as kestrel train: --max-steps, --batch-size, --grad-accum, --lr, --save-every, --resume, --dtype, ...'],
      DEVICE,
    ],
    example: 'kestrel ppo --actor-model sft/ --critic-model rm/ --reward-model rm/ --data prompts.jsonl --output ppo/ --lora --lr 1e-5 --batch-size 16 --max-new-tokens 64',
  },
  dpo: preferenceHelp('dpo', 'kestrel dpo --model ./SmolLM2-135M-Instruct --data pairs.jsonl --output dpo/ --lora --beta 0.1 --max-steps 200 --eval-fraction 0.05'),
  orpo: preferenceHelp('orpo', 'kestrel orpo --model ./SmolLM2-135M --data ultrafeedback.jsonl --output orpo/ --lora --max-steps 200'),
  simpo: preferenceHelp('simpo', 'kestrel simpo --model ./SmolLM2-135M-Instruct --data pairs.jsonl --output simpo/ --lora --beta 2 --simpo-gamma 0.5'),
  kto: preferenceHelp('kto', 'kestrel kto --model ./SmolLM2-135M-Instruct --data kto.jsonl --output kto/ --lora --undesirable-weight 1.5'),
  rm: preferenceHelp('rm', 'kestrel rm --model ./SmolLM2-135M-Instruct --data hh-rlhf.jsonl --output rm/ --max-steps 500 --eval-fraction 0.05'),
  demo: {
    usage: 'kestrel demo [--json] [--steps N] [--finetune full|lora|qlora] [--dpo] [--output DIR]',
    flags: [['--json', 'end with one JSON line of the results'], ['--steps N', 'pretraining steps (default 600)'],
      ['--finetune full|lora|qlora', 'how the fine-tune phase trains (default full)'],
      ['--dpo', 'then DPO with LoRA on right-vs-wrong answer pairs: held-out pair margin and ranking accuracy before and after (with --finetune full)'],
      ['--output DIR', 'where the model folder goes (default a temp dir)'], DEVICE],
    example: 'kestrel demo --finetune qlora',
  },
  doctor: {
    usage: 'kestrel doctor [--json]',
    flags: [['--json', 'one JSON object instead of the table']],
    example: 'kestrel doctor',
  },
  generate: {
    usage: 'kestrel generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--json] [sampling flags]',
    flags: [['--prompt TEXT', 'the text to continue'], ['--prompt-ids 1,2,3', 'token ids instead of text'], ['--json', 'print ids and text as JSON'],
      ['--draft-model DIR', 'speculative greedy decoding: a small model sharing the tokenizer drafts tokens the model verifies in one forward (same output as plain greedy; --json reports acceptance_rate)'],
      ['--num-draft-tokens K', 'drafts per verifying forward (default 4)'], ...GENERATION],
    example: 'kestrel generate --model ./SmolLM2-135M-Instruct --prompt "The capital of France is" --max-new-tokens 20 --quant q4',
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
      ['--task asr', 'Whisper speech recognition: --data is a manifest.jsonl of {"audio": path, "text": ...} or a .parquet file (🤗 datasets: an "audio" column of {bytes, path} structs or paths, the transcript in "text", "sentence" or "transcription"); with --language CODE (default en), --whisper-task transcribe|translate, --eval-data FILE or --eval-fraction X (default 0.1 from 10 records), --eval-every N, --spec-augment, --max-steps N (100), --batch-size N (8), --lr X (1e-3 LoRA, 1e-4 --full); WER/CER in metrics.jsonl'],
      ['--task tts', 'text to speech over EnCodec tokens: --codec DIR (an HF EnCodec folder), --data a manifest.jsonl of {"text": ..., "audio": path}; --bandwidth KBPS (default the codec\'s lowest target), --max-steps N (200), --batch-size N (4), --lr X (2e-3 LoRA, 1e-3 --full), LoRA with trainable embedding and head rows or --full; codes cached in OUTPUT/codec_cache; saves a merged folder for kestrel speak that --model takes again to train further'],
      ['(train flags)', 'as kestrel train, with lr 2e-4, linear decay after 5 warm-up steps and --checkpointing full by default; --dtype defaults to bf16 where the CPU multiplies bf16 natively (AMX-BF16 / AVX512_BF16), with the frozen base stored in bf16'],
      DEVICE,
    ],
    example: 'kestrel finetune --model ./SmolLM2-135M --data chat.jsonl --output adapter/ --qlora --max-steps 200',
  },
  embed: {
    usage: 'kestrel embed --model DIR --input texts.jsonl --output vectors.jsonl [flags]',
    flags: [
      ['--model DIR', 'a sentence-transformers folder, or any HF BERT / decoder folder (required)'],
      ['--input FILE', 'JSONL, one {"text": ...} per line (required)'],
      ['--output FILE', 'JSONL, one {"embedding": [...]} per input line, same order (required)'],
      ...EMBED_MODEL,
      ['--batch-size N', 'texts per forward (default 32)'],
      ['--prompt-name NAME / --prompt TEXT', "a prompt from config_sentence_transformers.json, or literal text, put before each text (default: the model's default prompt, else none)"],
      DEVICE,
    ],
    example: 'kestrel embed --model ./bge-small-en-v1.5 --input docs.jsonl --output vectors.jsonl --batch-size 64',
  },
  'embed-train': {
    usage: 'kestrel embed-train --model DIR --data FILE --output DIR [--loss mnrl|triplet|cosent|angle|contrastive] [flags]',
    flags: [
      ['--model DIR', 'a sentence-transformers folder, or any HF BERT / decoder folder (required)'],
      ['--data FILE', 'JSONL / JSON / Parquet, repeatable: {anchor, positive[, negative | negatives | negative_1..n]}, {sentence1, sentence2, score} or {sentence1, sentence2, label} (required)'],
      ['--output DIR', 'metrics.jsonl, checkpoint-N/ and the trained model in sentence-transformers layout (required)'],
      ['--loss NAME', 'mnrl (InfoNCE, in-batch + hard negatives), triplet, cosent, angle, contrastive (default mnrl)'],
      ['--scale X / --learnable-scale', 'similarity scale of mnrl/cosent/angle (default 20); learnable: trains log(scale) for mnrl'],
      ['--symmetric', 'mnrl: also rank anchors for each positive'],
      ['--margin X / --distance euclidean|cosine', 'triplet (default 5, euclidean) and contrastive (default 0.5) margins'],
      ['--matryoshka 768,512,256', 'sum the loss over the embeddings cut to these widths (default off)'],
      ['--gradcache-chunk N', 'GradCache: the batch takes activation memory of N texts at a time, same gradients (default off)'],
      ['--batch-size N / --max-steps N', 'rows per step (default 32) / steps (default one epoch)'],
      ['--lr X / --warmup N / --weight-decay X / --clip X', 'defaults 2e-5 / 10% of the steps / 0.01 / 1; linear decay after warm-up'],
      ['--query-prompt TEXT / --passage-prompt TEXT', 'put before anchors / other columns, saved as prompts "query" / "passage" (default none)'],
      ['--eval-data FILE / --eval-every N', '{anchor, positive} rows: recall@1/5/10, MRR@10, NDCG@10; scored pairs: STS Spearman; logged as eval_* (default every 50 steps)'],
      ['--lora', 'train LoRA adapters on the backbone (--lora-r 16, --lora-alpha r, --target all-linear); saved merged, the adapter in adapter/'],
      ['--dtype fp32|bf16', 'compute precision, float32 master weights (default fp32); with --lora the frozen base Linear weights are kept in bf16, and the saved model merges the adapter into the float32 base'],
      ...EMBED_MODEL,
      ['--save-every N / --seed N / --skip-bad-lines', 'checkpoint period (default off) / data order seed (default 0) / count bad rows instead of stopping'],
      ['--resume latest|DIR', 'continue exactly from a checkpoint (latest: the newest checkpoint-N/ in --output; none there: a fresh run)'],
      DEVICE,
    ],
    example: 'kestrel embed-train --model ./bge-small-en-v1.5 --data pairs.jsonl --output out/ --loss mnrl --matryoshka 384,256,128 --gradcache-chunk 16 --lora --dtype bf16 --save-every 100 --resume latest',
  },
  'embed-mine': {
    usage: 'kestrel embed-mine --model DIR --data FILE --output FILE [--num-negatives 3] [--corpus texts.jsonl]',
    flags: [
      ['--model DIR', 'the embedding model that ranks the candidates (required)'],
      ['--data FILE', '{anchor, positive} rows (required)'],
      ['--output FILE', 'JSONL rows {anchor, positive, negative_1..k} (required)'],
      ['--corpus FILE', 'JSONL {"text"} candidates (default: every distinct positive of the data)'],
      ['--num-negatives N / --skip N', 'negatives per row (default 3) / top candidates to pass over first, often false negatives (default 0)'],
      ['--query-prompt TEXT / --passage-prompt TEXT', 'put before anchors / candidates (default none)'],
      ...EMBED_MODEL,
      ['--batch-size N', 'texts per forward (default 32)'],
      DEVICE,
    ],
    example: 'kestrel embed-mine --model ./bge-small-en-v1.5 --data pairs.jsonl --output hard.jsonl --num-negatives 3',
  },
  serve: {
    usage: 'kestrel serve --model [NAME=]DIR|FILE.gguf [--model ...] [--adapter NAME=DIR ...] [--quant bf16|int8|q4] [--port N] [--host H] [--api-key KEY] [--max-queue N] [--kv-cache-mb N] [--prefill-chunk N]',
    flags: [
      ['--model [NAME=]DIR', 'an HF model folder with a tokenizer, or a .gguf file, served as NAME (default: the folder or file name); repeat for several (required)'],
      ['--adapter NAME=DIR', 'a PEFT LoRA adapter on the first --model, served as NAME; repeatable'],
      ['--quant bf16|int8|q4', 'quantize every model\'s Linears (and head) for decoding: bf16, int8 per-channel or q4 groups of 32, dequantized inside the decode GEMV (default: the weights as saved)'],
      ['--port N', `default ${S.port} (0 picks a free port; the URL is printed)`],
      ['--host H', `interface to bind (default ${S.host}); any other than loopback needs --api-key`],
      ['--api-key KEY', 'require Authorization: Bearer KEY on /v1/* (default: $KESTREL_API_KEY, else none)'],
      ['--max-queue N', `requests that may wait for room in the batch (default ${S.maxQueue}); beyond it 429 with Retry-After`],
      ['--max-body-bytes N', `largest request body (default ${S.maxBodyBytes})`],
      ...ENGINE_HELP,
      DEVICE,
    ],
    example: 'kestrel serve --model ./SmolLM2-135M-Instruct --adapter french=./adapter --port 8000',
  },
  launch: {
    usage: 'kestrel launch -n N [--master-port P] [--master-addr A] [--elastic --min-ranks M [--max-restarts K]] -- <command and args>\n       kestrel launch --hostfile FILE [-n N] [--mpi openmpi|mpich] [--elastic --min-ranks M] -- <command and args>',
    flags: [
      ['-n, --nproc N', 'rank processes to start (required on one machine; default with --hostfile: all its slots)'],
      ['--master-port P', "rank 0's rendezvous port (default: a free port; shared-memory backend)"],
      ['--master-addr A', 'the address rank 0 listens on (default 127.0.0.1; shared-memory backend)'],
      ['--hostfile FILE', "DeepSpeed's hostfile: lines 'hostname slots=N' ('#' comments); the ranks start across these machines through mpirun"],
      ['--backend B', "shm (ranks on this machine over shared memory) or mpi (through mpirun, on the MPI transport); default shm, mpi with --hostfile"],
      ['--mpi I', 'openmpi or mpich: whose mpirun starts the ranks (default: the one `mpirun` on PATH is)'],
      ['--elastic', 'when a rank dies, restart `kestrel train` from the latest checkpoint in --output on the ranks left, --grad-accum raised to keep the global batch; with --hostfile the file is read again at each restart (a changed file says how many slots there are, up to -n: machines removed or back)'],
      ['--min-ranks M', 'with --elastic: fail instead of restarting on fewer than M ranks (default: -n)'],
      ['--max-restarts K', 'with --elastic: restarts allowed (default 3)'],
      ['-- <command>', 'run once per rank with its rank in the environment (RANK... or mpirun\'s OMPI_*/PMI_*); `kestrel ...` runs this kestrel'],
    ],
    example: 'kestrel launch -n 2 -- kestrel train --model ./config.json --data data.jsonl --output out/ --max-steps 100\n  kestrel launch --hostfile hosts.txt -- kestrel train --model ./config.json --data data.jsonl --output out/\n  kestrel launch --elastic --min-ranks 2 -n 4 -- kestrel train --model ./config.json --data data.jsonl --output out/ --save-every 50',
  },
  consolidate: {
    usage: 'kestrel consolidate CKPT --out DIR [--config FILE]',
    flags: [
      ['CKPT', 'a checkpoint folder written by a ZeRO run (stage 1-3: zero_manifest.json and one optimizer shard per rank)'],
      ['--out DIR', 'the HF folder to write: model.safetensors with the float32 master weights reassembled from the shards, config.json (required)'],
      ['--config FILE', "the model's config.json (default: CKPT/config.json, else the run's output folder above CKPT)"],
    ],
    example: 'kestrel consolidate out/checkpoint-300 --out out/fp32 && kestrel generate --model out/fp32 --prompt "Hello"',
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
      ...ENGINE_HELP,
      DEVICE,
    ],
    example: 'kestrel studio --models ~/models --port 7860',
  },
  export: {
    usage: 'kestrel export --model DIR [--adapter DIR] --format gguf --type f32|f16|bf16|q8_0|q4_0|q4_k_m --out FILE.gguf [--ollama]',
    flags: [
      ['--model DIR', 'an HF causal-LM folder: llama, mistral, mixtral, qwen2, gemma, gemma2, phi3 or gpt2 (required)'],
      ['--adapter DIR', 'a PEFT LoRA adapter, merged into the weights before export'],
      ['--tokenizer DIR', 'tokenizer folder (default: the model folder); GGUF files carry the tokenizer, so one is required'],
      ['--out FILE.gguf', 'the file to write (written to a temporary name, then renamed) (required)'],
      ['--format gguf', `the export format (default ${XD.format}, the only one)`],
      ['--type T', `f32|f16|bf16 (norms and biases stay f32), q8_0, q4_0 (output.weight q6_K), q4_k_m (q4_K, with q6_K for output.weight and some attn_v/ffn_down, as llama-quantize does) (default ${XD.type})`],
      ['--ollama', 'also write a Modelfile beside the GGUF (FROM, a Go TEMPLATE for known chat formats, PARAMETER stop)'],
      ['--quiet', 'no progress bar'],
      DEVICE,
    ],
    example: 'kestrel export --model ./SmolLM2-135M-Instruct --type q8_0 --out smol.q8_0.gguf --ollama',
  },
  quantize: {
    usage: 'kestrel quantize --model DIR --calib data.jsonl --format int8|q4 --out DIR [--heldout FILE] [--seq-len N] [--calib-rows N] [--group-size N] [--json]',
    flags: [
      ['--model DIR', 'a decoder-family HF model folder with a tokenizer'],
      ['--calib FILE', 'JSONL/JSON/Parquet records with a "text" field: the calibration activations'],
      ['--format int8|q4', 'int8: one scale per output row; q4: 4-bit groups with one scale each (llama.cpp q4_0-like)'],
      ['--out DIR', 'the quantized folder (safetensors + quantization_config; loadPretrained and --model read it) and quantize_report.json'],
      ['--heldout FILE', 'text for the before/after loss and perplexity (default: the last 10% of --calib records)'],
      ['--seq-len N', 'tokens per sequence (default 256)'],
      ['--calib-rows N', 'token rows per layer kept for the AWQ scale search (default 512)'],
      ['--group-size N', 'q4 values per scale, a power of two (default 32)'],
      ['--json', 'one JSON line with the report'],
      DEVICE,
    ],
    example: 'kestrel quantize --model ./SmolLM2-135M --calib wiki.jsonl --format q4 --out ./smol-q4 && kestrel generate --model ./smol-q4 --prompt "Hello"',
  },
  merge: {
    usage: 'kestrel merge --model DIR --adapter DIR --out DIR [--dtype fp32|bf16|fp16]',
    flags: [['--model DIR', 'the base model folder'], ['--adapter DIR', 'the PEFT adapter'], ['--out DIR', 'the merged HF folder'], ['--dtype fp32|bf16|fp16', 'saved precision (default fp32)'], DEVICE],
    example: 'kestrel merge --model ./base --adapter ./adapter --out ./merged --dtype bf16',
  },
  transcribe: {
    usage: 'kestrel transcribe --model DIR FILE... [--language en] [--task transcribe|translate] [--timestamps] [--json]',
    flags: [
      ['--model DIR', 'an HF Whisper folder (config.json, model.safetensors, generation_config.json, tokenizer) (required)'],
      ['FILE...', 'audio files: WAV, or anything ffmpeg decodes (FLAC, MP3, Ogg, Opus, M4A); resampled to 16 kHz mono'],
      ['--language CODE', "e.g. en, fr (default: generation_config's forced language, else detected from the audio)"],
      ['--task transcribe|translate', "default: generation_config's, else transcribe"],
      ['--max-new-tokens N', 'per 30 s window (default: up to max_length)'],
      ['--timestamps', 'generate timestamp tokens (Whisper\'s <|0.00|>...; max_initial_timestamp_index from generation_config) and print one "[start -> end] text" line per segment (default off)'],
      ['--json', 'one line per file: {"file", "text", "tokens"}, with --timestamps also "segments": [{"start", "end", "text"}] in seconds'],
      DEVICE,
    ],
    example: 'kestrel transcribe --model ./whisper-tiny speech.flac --language en --json',
  },
  speak: {
    usage: 'kestrel speak --model DIR --codec DIR "text" --output out.wav [--temperature T] [--seed N] [--max-seconds S]',
    flags: [
      ['--model DIR', 'a folder written by kestrel finetune --task tts (its config.json has kestrel_tts) (required)'],
      ['--codec DIR', 'the HF EnCodec folder it was trained with (required)'],
      ['"text"', 'what to say, one argument'],
      ['--output FILE', 'the WAV to write, at the codec\'s rate, 16-bit (required)'],
      ['--temperature T', 'default 0: greedy; above 0 samples the codes'],
      ['--seed N', 'for sampling'],
      ['--max-seconds S', 'longest audio generated (default 10)'],
      DEVICE,
    ],
    example: 'kestrel speak --model ./tts-run --codec ./encodec_24khz "hello there" --output hello.wav',
  },
};

/** The --help text of a command. */
export function commandHelp(name: string): string {
  const h = HELP[name];
  const width = Math.max(...h.flags.map(([f]) => f.length));
  return `usage: ${h.usage}\n\nflags:\n${h.flags.map(([f, a]) => `  ${f.padEnd(width)}  ${a}`).join('\n')}\n\nexample:\n  ${h.example}\n`;
}
