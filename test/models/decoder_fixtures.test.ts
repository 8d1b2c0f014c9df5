// Every causal-LM fixture (Llama family and GPT-2) made by transformers 4.44.2 (../shared/fixtures/models): logits,
// loss (with and without ignored pads), every hidden state and every parameter's gradient;
// Mixtral's router logits and load-balancing loss; save -> load round trip bit-exact. Forward and
// backward run on every native device (cpu, and cuda on a GPU or the emulator), same tolerances.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { loadCausalLM, loadPretrained, savePretrained } from '../../src/models/load.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

export const DECODER_FIXTURES = ['llama', 'llama-tied-rope-llama3', 'mistral-sliding-window', 'qwen2', 'gemma', 'gemma2', 'phi3', 'mixtral', 'qwen2-moe', 'gpt2'];

/** |got - want| <= rel * max|want|: relative to the tensor's scale (STYLE.md's two-sided form). */
function closeRel(got: k.Tensor, want: k.Tensor, rel: number, what: string): void {
  const w = want.toFloat32Array();
  const scale = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assertClose(got, want, { atol: rel * scale, rtol: rel, what });
}

/** A golden tensor, on `device` (inputs) or as stored (expected values; comparisons read both back). */
function golden(g: SafetensorsFile, device: Device): (n: string) => k.Tensor {
  return (n: string): k.Tensor => k.tidy(() => g.tensor(n).to(device));
}

for (const name of DECODER_FIXTURES)
  for (const device of ALL_DEVICES) {
  const fx = fixture('models', name);
  describe(`${name} on ${device} matches transformers`, { skip: fx.skip || skipUnless(device) }, () => {
    test('logits, loss, hidden states and every gradient', async () => {
      const { model } = await loadCausalLM(fx.path, { backend: device });
      const moe = model instanceof k.CausalLM ? model.config.moe : null;
      using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
      const t = golden(g, device);
      k.tidy(() => {
        const out = model.forward({ inputIds: t('input_ids'), attentionMask: t('attention_mask'), labels: t('labels'), outputHiddenStates: true });
        closeRel(out.logits!, t('logits'), 1e-4, 'logits');
        assertClose([out.loss!.item()], [t('loss').item()], { atol: 0, rtol: 1e-5, what: 'loss' });
        out.hiddenStates.forEach((h, i) => closeRel(h, t(`hidden_states.${i}`), 1e-4, `hidden_states.${i}`));
        assert.equal(out.hiddenStates.length, model.config.numLayers + 1);
        if (moe) {
          out.routerLogits.forEach((r, i) => closeRel(r, t(`router_logits.${i}`), 1e-4, `router_logits.${i}`));
          assertClose([out.auxLoss!.item()], [t('aux_loss').item()], { atol: 0, rtol: 1e-5, what: 'aux_loss' });
        }
        out.loss!.backward();
        for (const [pname, p] of model.namedParameters()) closeRel(p.grad!, t(`grad.${pname}`), 1e-3, `grad.${pname}`);
        const ignore = model.forward({ inputIds: t('input_ids'), attentionMask: t('attention_mask'), labels: t('labels_ignore_pad') }); // qwen2-moe: the config's output_router_logits adds the aux loss, as HF's did
        assertClose([ignore.loss!.item()], [t('loss_ignore_pad').item()], { atol: 0, rtol: 1e-5, what: 'loss_ignore_pad' });
        if (moe) {
          const withAux = model.forward({ inputIds: t('input_ids'), attentionMask: t('attention_mask'), labels: t('labels'), routerAuxLoss: true });
          assertClose([withAux.loss!.item()], [t('loss_with_aux').item()], { atol: 0, rtol: 1e-5, what: 'loss_with_aux' });
        }
      });
      model.dispose();
    });

    test('the training loss path (returnLogits: false, chunked linear + cross-entropy): loss and every gradient', async () => {
      const { model } = await loadCausalLM(fx.path, { backend: device });
      using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
      const t = golden(g, device);
      k.tidy(() => {
        const out = model.forward({ inputIds: t('input_ids'), attentionMask: t('attention_mask'), labels: t('labels'), returnLogits: false });
        if (model instanceof k.CausalLM) assert.equal(out.logits, null);
        assertClose([out.loss!.item()], [t('loss').item()], { atol: 0, rtol: 1e-5, what: 'loss' });
        out.loss!.backward();
        for (const [pname, p] of model.namedParameters()) closeRel(p.grad!, t(`grad.${pname}`), 1e-3, `grad.${pname}`);
        const ignore = model.forward({ inputIds: t('input_ids'), attentionMask: t('attention_mask'), labels: t('labels_ignore_pad'), returnLogits: false });
        assertClose([ignore.loss!.item()], [t('loss_ignore_pad').item()], { atol: 0, rtol: 1e-5, what: 'loss_ignore_pad' });
      });
      model.dispose();
    });

    test('savePretrained -> loadPretrained is bit-exact', async () => {
      const p = await loadPretrained(fx.path, { backend: device });
      const dir = mkdtempSync(join(tmpdir(), `kestrel-${name}-`));
      savePretrained(dir, p);
      const back = await loadPretrained(dir);
      const a = p.model.stateDict();
      for (const [n, t] of Object.entries(back.model.stateDict())) assert.deepEqual(t.toTypedArray(), a[n].toTypedArray(), n);
      assert.deepEqual(back.hfConfig, p.hfConfig);
      p.model.dispose();
      back.model.dispose();
    });
  });
}

test('an unknown model_type lists the supported ones', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-bad-'));
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'rwkv' }));
  writeFileSync(join(dir, 'model.safetensors'), Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 123, 125]));
  await assert.rejects(loadPretrained(dir), /model_type "rwkv" is not supported \(supported: llama, mistral, qwen2, qwen3, mixtral, qwen2_moe, gemma, gemma2, phi3/);
});
