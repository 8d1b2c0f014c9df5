// LoRA layers: gradients against finite differences (float64, reference backend), the frozen base
// gets no gradient and no optimizer state, rsLoRA scaling, merge equals the adapter, and the
// merge / generate --adapter commands.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, gradcheck, refLeaf, runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';

test('LoRA gradients match finite differences (dx, dA, dB)', () => {
  k.tidy(() => {
    const base = new k.nn.Linear(5, 4, { backend: 'ref' }).to('float64');
    const l = new k.lora.LoraLinear(base, { r: 2, alpha: 3 }).to('float64');
    const x = refLeaf([3, 5], 1);
    const [A, B] = [refLeaf([2, 5], 2), refLeaf([4, 2], 3)];
    gradcheck((xx, a, b) => {
      l.lora_A.get('default').weight = a;
      l.lora_B.get('default').weight = b;
      return l.forward(xx);
    }, [x, A, B], { what: 'lora' });
    assert.equal(base.weight.grad, null, 'frozen base weight gets no gradient');
  });
});

test('rsLoRA scaling, frozen base without optimizer state, merge equals the adapter', () => {
  k.manualSeed(1);
  const lin = new k.nn.Linear(8, 6);
  const l = new k.lora.LoraLinear(lin, { r: 4, alpha: 8, useRslora: true });
  assert.equal(l.scaling(), 8 / 2);
  k.nn.init.normal_(l.lora_B.get('default').weight, 0.1);
  const opt = new k.optim.AdamW(l.parameters().filter((p) => p.requiresGrad));
  k.tidy(() => l.forward(k.randn([2, 8])).sum().backward());
  opt.step();
  assert.equal(lin.weight.grad, null);
  assert.equal(opt.stateDict().state.length, 2, 'optimizer state only for lora_A and lora_B');
  const x = k.randn([3, 8]);
  const y = k.tidy(() => l.forward(x));
  const merged = l.merged();
  assertClose(k.tidy(() => merged.forward(x)), y, { atol: 1e-5, rtol: 1e-5 });
});

const llama = fixture('models', 'llama');
const adapter = fixture('lora', 'llama-lora-q-v');
test('kestrel merge and generate --adapter', { skip: llama.skip || adapter.skip }, () => {
  const out = join(mkdtempSync(join(tmpdir(), 'kestrel-merge-')), 'merged');
  const m = runCli(['merge', '--model', llama.path, '--adapter', adapter.path, '--out', out]);
  assert.equal(m.status, 0, m.stderr);
  assert.ok(existsSync(join(out, 'model.safetensors')));
  const ids = '1,222,154,173,160,118';
  const viaAdapter = runCli(['generate', '--model', llama.path, '--adapter', adapter.path, '--prompt-ids', ids, '--max-new-tokens', '12', '--json']);
  const viaMerged = runCli(['generate', '--model', out, '--prompt-ids', ids, '--max-new-tokens', '12', '--json']);
  assert.equal(viaAdapter.status, 0, viaAdapter.stderr);
  const a = JSON.parse(viaAdapter.stdout.trim()).generated_ids;
  assert.deepEqual(a, JSON.parse(viaMerged.stdout.trim()).generated_ids);
  assert.deepEqual(a, [125, 207, 73, 147, 33, 147, 33, 34, 125, 239, 236, 203], 'peft fixture greedy ids');
});
