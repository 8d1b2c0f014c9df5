// The text-to-speech token layout and vocabulary growth: codes map frame-major to ids after the
// text vocabulary (worked example by hand) and back, a token from the wrong codebook is named,
// the allowed range cycles through the codebooks; growVocab keeps every old weight, so the grown
// model's logits over the old ids equal the original model's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { allowedRange, codesToTokens, endOfAudio, extendedVocab, startOfAudio, tokensToCodes } from '../../src/train/tts_layout.js';
import { growVocab } from '../../src/train/tts_model.js';
import { TINY } from '../models/tiny_llama.js';
import { assertClose } from '../helpers.js';

const L = { offset: 100, codebooks: 2, codebookSize: 8 };

test('codes <-> tokens: frame-major, codebook q in its own block of ids', () => {
  // codes [[3, 4], [1, 2]] (codebook 0 then 1, 2 frames): frame 0 = 100+3, 108+1; frame 1 = 100+4, 108+2
  assert.deepEqual(codesToTokens([3, 4, 1, 2], 2, L), [103, 109, 104, 110]);
  assert.deepEqual(tokensToCodes([103, 109, 104, 110], L), { codes: [3, 4, 1, 2], frames: 2 });
  assert.deepEqual([startOfAudio(L), endOfAudio(L), extendedVocab(L)], [116, 117, 118]);
  assert.deepEqual([0, 1, 2, 3].map((n) => allowedRange(n, L)), [[100, 108], [108, 116], [100, 108], [108, 116]]);
  assert.throws(() => tokensToCodes([109, 103], L), /token 109 at 0 is not a codebook 0 id \[100, 108\)/);
  assert.throws(() => tokensToCodes([103], L), /1 tokens are not whole frames of 2 codebooks/);
});

test('growVocab keeps the old rows: logits over the old ids are unchanged', () => {
  const model = new k.CausalLM(decoderConfig(TINY, 'tiny'), { generator: new k.Generator(3) });
  const ids = k.tensor([[1, 5, 9, 63]], { dtype: 'int64' });
  const before = model.forward({ inputIds: ids }).logits!.toFloat32Array();
  const { model: grown, hfConfig } = growVocab(model, TINY, 80, 0);
  assert.equal(hfConfig.vocab_size, 80);
  const after = grown.forward({ inputIds: ids }).logits!;
  assert.deepEqual([...after.shape], [1, 4, 80]);
  assertClose(after.narrow(2, 0, 64).contiguous(), before, { atol: 1e-6, rtol: 1e-6, what: 'old-vocabulary logits' });
  assert.throws(() => growVocab(grown, hfConfig, 10, 0), /new vocabulary \(10\) is smaller than the model's \(80\)/);
  grown.dispose();
});
