// `kestrel finetune --model DIR|config.json --data FILE --output DIR [--lora-r 16 --lora-alpha 16
// --target all-linear] [--qlora] [--full]`: `kestrel train` with Unsloth's defaults for adapting a
// pretrained model (LoRA r 16 alpha 16 on every linear layer but the head, lr 2e-4, linear decay
// after 5 warm-up steps, activation checkpointing on; chat data trains on assistant tokens only,
// as the data pipeline always does). Takes every `kestrel train` flag and writes the same
// metrics.jsonl; saves a PEFT adapter (or, with --full, the whole model). --dtype defaults to bf16
// where the CPU multiplies bf16 natively (the frozen base is then stored in bf16, as Unsloth's is).
import { join } from 'node:path';
import { type NativeAddon, isNativeBf16Path, loadNative } from '../backend/addon.js';
import { castFrozenLinears } from '../lora/frozen_dtype.js';
import { injectLora, saveAdapter, type LoraConfig } from '../lora/peft.js';
import { quantizeModel } from '../quant/quantize_model.js';
import type { RunSettings } from '../train/run_config.js';
import { numberFlag } from './flags.js';
import { finetuneAsrCommand } from './finetune_asr.js';
import { finetuneTtsCommand } from './finetune_tts.js';
import { type TrainingPlan, resolveSettings, runTraining, takeNproc } from './train.js';
import { launchRanks } from './launch.js';

const FLAGS = {
  'lora-r': { type: 'string' }, 'lora-alpha': { type: 'string' }, 'lora-dropout': { type: 'string' }, target: { type: 'string' },
  rslora: { type: 'boolean' }, qlora: { type: 'boolean' }, 'quant-type': { type: 'string' }, 'double-quant': { type: 'boolean' },
  full: { type: 'boolean' },
} as const;

/** Unsloth's fine-tuning recipe, under the run file, the DeepSpeed config and the flags. */
export const FINETUNE_DEFAULTS: Partial<RunSettings> = {
  lr: 2e-4, checkpointing: 'full', schedule: { type: 'linear', warmup: 5, params: {} },
};

/** The LoRA settings from the flags (r 16, alpha 16, all linear layers by default). */
export function loraFromFlags(values: Record<string, unknown>): LoraConfig {
  const r = numberFlag(values, 'lora-r', { int: true, min: 1 }) ?? 16;
  const target = (values.target as string | undefined) ?? 'all-linear';
  return {
    r, alpha: numberFlag(values, 'lora-alpha', { above: 0 }) ?? r, dropout: numberFlag(values, 'lora-dropout', { min: 0, below: 1 }) ?? 0, useRslora: values.rslora === true,
    targetModules: target === 'all-linear' ? 'all-linear' : target.split(',').map((t) => t.trim()).filter(Boolean),
  };
}

/**
 * finetune's default --dtype, from the addon's bf16 GEMM path: bf16 where the CPU multiplies bf16
 * natively (AMX-BF16 tiles, or AVX512_BF16 where it beats float32 FMAs: the addon measures that),
 * fp32 where bf16 operands would only be widened to float32 ('convert', or no addon at all).
 * KESTREL_BF16_GEMM=convert forces the fp32 branch on any CPU.
 * @example finetuneDtype({ bf16Gemm: 'amx' }) // { dtype: 'bf16', why: 'this CPU multiplies bf16 natively (amx)' }
 */
export function finetuneDtype(info: Pick<ReturnType<NativeAddon['info']>, 'bf16Gemm'> | null): { dtype: 'fp32' | 'bf16'; why: string } {
  const path = info?.bf16Gemm ?? null;
  if (isNativeBf16Path(path)) return { dtype: 'bf16', why: `this CPU multiplies bf16 natively (${path})` };
  return { dtype: 'fp32', why: path === null ? 'no native CPU backend' : `this CPU has no native bf16 matmul (the bf16 path is '${path}')` };
}

export async function finetuneCommand(argv0: string[]): Promise<number> {
  const { nproc, rest: argv } = takeNproc(argv0);
  if (nproc !== null) return launchRanks(nproc, ['kestrel', 'finetune', ...argv]);
  // speech recognition (Whisper) and text to speech have their own data and loops
  const task = argv.find((a, i) => argv[i - 1] === '--task') ?? argv.find((a) => a.startsWith('--task='))?.slice(7);
  if (task === 'asr') return finetuneAsrCommand(argv);
  if (task === 'tts') return finetuneTtsCommand(argv);
  if (task !== undefined) throw new Error(`--task must be asr (speech recognition) or tts (text to speech); text fine-tuning needs no --task, got '${task}'`);
  const auto = finetuneDtype(loadNative()?.info() ?? null);
  const { settings, warnings, values, explicit } = resolveSettings(argv, { flags: FLAGS, defaults: { ...FINETUNE_DEFAULTS, dtype: auto.dtype } });
  if (values.full && values.qlora) throw new Error('--full and --qlora exclude each other (QLoRA trains adapters on a frozen 4-bit base)');
  const quiet = values.quiet === true;
  // said even with --quiet (stderr): the default depends on the machine, so a run's log should show it
  if (explicit.dtype === undefined) process.stderr.write(`dtype ${auto.dtype} (default: ${auto.why}; --dtype overrides)\n`);
  const profile = values.profile === true;
  if (values.full) return runTraining(settings, warnings, quiet, {}, profile);
  const lora = loraFromFlags(values);
  const quantType = (values['quant-type'] as string | undefined) ?? 'nf4';
  if (!['nf4', 'fp4', 'int8'].includes(quantType)) throw new Error(`--quant-type must be nf4, fp4 or int8, got '${quantType}'`);
  const plan: TrainingPlan = {
    prepare: (model) => {
      // quantize first: the adapters then wrap the 4-bit layers, and the head stays float
      if (values.qlora) quantizeModel(model, { type: quantType as 'nf4' | 'fp4' | 'int8', doubleQuant: values['double-quant'] === true });
      const layers = injectLora(model, lora);
      // bf16/fp16 compute: the frozen Linear weights are stored in that dtype (the 4-bit ones decode to it)
      if (settings.dtype !== 'fp32') castFrozenLinears(model, settings.dtype === 'bf16' ? 'bfloat16' : 'float16');
      const trainable = model.parameters().filter((p) => p.requiresGrad).reduce((n, p) => n + p.numel, 0);
      const total = model.parameters().reduce((n, p) => n + p.numel, 0);
      if (!quiet) process.stderr.write(`${values.qlora ? 'QLoRA' : 'LoRA'} r ${lora.r} alpha ${lora.alpha} on ${layers.length} layers: ${trainable.toLocaleString()} trainable of ${total.toLocaleString()} parameters (frozen base in ${settings.dtype})\n`);
    },
    save: (model, _hf, output) => {
      saveAdapter(model, output, lora, { baseModel: settings.model });
      return `adapter (${join(output, 'adapter_model.safetensors')})`;
    },
  };
  return runTraining(settings, warnings, quiet, plan, profile);
}
