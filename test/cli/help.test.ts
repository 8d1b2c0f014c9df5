// Every kestrel command answers --help (usage, each flag with its default, an example) and
// `kestrel --version` prints the package version.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { HELP } from '../../src/cli/help.js';
import { runCli } from '../helpers.js';
import { loadNative } from '../../src/backend/addon.js';

const COMMANDS = ['demo', 'doctor', 'generate', 'chat', 'train', 'finetune', 'merge', 'quantize', 'export', 'serve', 'studio', 'transcribe', 'speak', 'embed', 'embed-train', 'embed-mine', 'dpo', 'orpo', 'simpo', 'kto', 'rm', 'grpo', 'ppo', 'launch', 'consolidate'];

test('every command answers --help with its flags and an example', () => {
  assert.deepEqual(Object.keys(HELP).sort(), [...COMMANDS].sort());
  for (const name of COMMANDS) {
    const r = runCli([name, '--help']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^usage: kestrel ${name}`));
    assert.match(r.stdout, /\nflags:\n/);
    assert.match(r.stdout, new RegExp(`\\nexample:\\n  kestrel ${name}`));
    if (!['doctor', 'launch', 'consolidate'].includes(name)) assert.match(r.stdout, /--device auto\|cuda\|cpu/);
  }
  const train = runCli(['train', '-h']).stdout;
  for (const flag of ['--max-steps', '--seq-len', '--batch-size', '--grad-accum', '--lr', '--dtype', '--checkpointing', '--resume', '--deepspeed'])
    assert.ok(train.includes(flag), `train --help lists ${flag}`);
  assert.match(train, /--max-steps N\s+optimizer steps \(default 100\)/);
  const serve = runCli(['serve', '--help']).stdout;
  for (const flag of ['--model [NAME=]DIR', '--adapter NAME=DIR', '--port N', '--host H', '--api-key KEY', '--max-queue N', '--max-body-bytes N', '--engine batch|serial', '--kv-cache-mb N', '--prefill-chunk N', '--max-batch N'])
    assert.ok(serve.includes(flag), `serve --help lists ${flag}`);
  assert.match(serve, /--max-queue N\s+requests that may wait for room in the batch \(default 64\)/);
  assert.match(serve, /--kv-cache-mb N\s+the paged KV cache of each model, float32, in MB \(default 256\)/);
  const studio = runCli(['studio', '--help']).stdout;
  assert.match(studio, /--port N\s+default 7860/);
  assert.match(studio, /--host H\s+interface to bind \(default 127\.0\.0\.1\); any other than loopback needs --token/);
  for (const flag of ['--models DIR', '--token TOKEN', '--max-body-bytes N']) assert.ok(studio.includes(flag), `studio --help lists ${flag}`);
});

test('kestrel --version prints the version', () => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const r = runCli(['--version']);
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), `kestrel ${version}`);
});

test('kestrel doctor --json reports the CPU features and kernel paths the addon chose', { skip: loadNative() ? false : 'native addon not built' }, () => {
  const r = runCli(['doctor', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { cpu: Record<string, boolean>; halfGemm: { bfloat16: string }; quantGemv: string };
  // the same process-independent facts the addon reports here (cpuid, KESTREL_* unset)
  const info = loadNative()!.info();
  assert.deepEqual(report.cpu, { avx2: info.avx2, fma: info.fma, avx512f: info.avx512f, f16c: info.f16c, avx512bf16: info.avx512bf16, amx_bf16: info.amxBf16, avx512vnni: info.avx512vnni, avx_vnni: info.avxVnni });
  assert.equal(report.halfGemm.bfloat16, info.bf16Gemm);
  assert.equal(report.quantGemv, info.quantGemv);
});
