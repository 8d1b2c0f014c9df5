// BERT against transformers 4.44.2's BertModel: every hidden state, last_hidden_state and
// pooler_output, with a padding mask and token_type_ids.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('models', 'bert');

test('bert matches transformers', { skip: fx.skip }, async () => {
  const { model } = await k.loadPretrained(fx.path);
  assert.ok(model instanceof k.BertModel);
  using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
  k.tidy(() => {
    const out = model.forward({ inputIds: g.tensor('input_ids'), attentionMask: g.tensor('attention_mask'), tokenTypeIds: g.tensor('token_type_ids'), outputHiddenStates: true });
    const near = (got: k.Tensor, name: string): void => {
      const want = g.tensor(name);
      const scale = want.toFloat32Array().reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      assertClose(got, want, { atol: 1e-4 * scale, rtol: 1e-4, what: name });
    };
    near(out.lastHiddenState, 'last_hidden_state');
    near(out.poolerOutput, 'pooler_output');
    out.hiddenStates.forEach((h, i) => near(h, `hidden_states.${i}`));
    assert.equal(out.hiddenStates.length, model.config.numLayers + 1);
  });
  model.dispose();
});
