// EnCodec against transformers 4.44.2's EncodecModel (the tiny random model of
// ../shared/fixtures/audio/models/encodec-tiny-random, 24 kHz, causal, weight-norm convs): the
// encoder latent and decoded audio within 1e-4 of the golden's peak (the tolerance; the
// README observes ~5e-7 between float32 and float64 decodes), codes exactly equal at both target
// bandwidths (1.5 kbps -> 3 codebooks, 3.0 kbps -> 4: the 6 the formula gives, capped).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { loadEncodec } from '../../src/models/encodec.js';
import { codebooksForBandwidth, encodecConfig, frameRate, hopLength, numQuantizers } from '../../src/models/encodec_config.js';
import { fixture } from '../fixtures.js';
import { nearGolden } from '../audio/golden.js';

const fx = fixture('audio', 'models', 'encodec-tiny-random');

test('encodec: latent, codes at each bandwidth and decoded audio equal transformers', { skip: fx.skip }, () => {
  const codec = loadEncodec(fx.path);
  using g = new SafetensorsFile(join(fx.path, 'goldens.safetensors'));
  k.tidy(() => {
    const input = g.tensor('input_values').reshape([1, 24000]);
    nearGolden(codec.encoder.forward(input.reshape([1, 1, 24000])), g.tensor('encoder_embeddings'), 'encoder_embeddings');
    for (const [bw, nq] of [[1.5, 3], [3.0, 4]] as const) {
      const key = bw === 1.5 ? 'bw_1.5' : 'bw_3';
      assert.equal(codec.codebooks(bw), nq, `codebooks at ${bw} kbps`);
      const codes = codec.encode(input, { bandwidth: bw });
      const want = g.tensor(`audio_codes.${key}`).reshape([nq, 75]);
      assert.deepEqual([...codes.shape], [nq, 75]);
      assert.deepEqual(Array.from(codes.toTypedArray(), Number), Array.from(want.toTypedArray(), Number), `codes at ${bw} kbps`);
      nearGolden(codec.decode(want), g.tensor(`audio_values.${key}`).reshape([1, 24000]), `audio at ${bw} kbps`);
    }
  });
  codec.dispose();
});

test('encodec: bad codes and bandwidths are named', { skip: fx.skip }, () => {
  const codec = loadEncodec(fx.path);
  assert.throws(() => codec.codebooks(6), /bandwidth 6 is not one of the model's target_bandwidths \[1.5, 3\]/);
  k.tidy(() => {
    assert.throws(() => codec.decode(k.tensor([[1, 64]], { dtype: 'int64' })), /code at flat index 1 is outside \[0, 64\)/);
    assert.throws(() => codec.decode(k.zeros([5, 2], { dtype: 'int64' })), /codebooks \(1\.\.4\)/);
    assert.throws(() => codec.encode(k.zeros([2, 100])), /must be \[1 \(audio_channels\)/);
    // a clip shorter than the reflect padding (transformers pads zeros first) still gives ceil(T / 320) frames
    const short = codec.encode(k.tensor([[0.1, -0.2, 0.3, 0.05, -0.1]]), { bandwidth: 1.5 });
    assert.deepEqual([...short.shape], [3, 1]);
    assert.deepEqual([...codec.decode(short).shape], [1, 320]);
    assert.deepEqual([...codec.encode(k.zeros([1, 700]), { bandwidth: 3 }).shape], [4, 3]);
  });
  codec.dispose();
});

test('encodec config: the derived numbers as transformers computes them, and unsupported settings named', () => {
  const base = { upsampling_ratios: [8, 5, 4, 2], sampling_rate: 24000, codebook_size: 1024, hidden_size: 128, codebook_dim: 128, target_bandwidths: [1.5, 3, 6, 12, 24] };
  const c = encodecConfig(base, 'config.json');
  // encodec_24khz: 320 samples a frame, 75 frames/s, 32 codebooks (24 kbps / 0.75 kbps); 6 kbps -> 8
  assert.deepEqual([hopLength(c), frameRate(c), numQuantizers(c), codebooksForBandwidth(c, 6), codebooksForBandwidth(c, 1.5)], [320, 75, 32, 8, 2]);
  assert.throws(() => encodecConfig({ ...base, norm_type: 'time_group_norm' }, 'enc/config.json'), /enc\/config.json.*norm_type.*'time_group_norm' is not supported/);
  assert.throws(() => encodecConfig({ ...base, codebook_dim: 64 }, 'enc/config.json'), /codebook_dim.*\(64\) must equal hidden_size \(128\)/);
  assert.throws(() => encodecConfig({ ...base, upsampling_ratios: [] }, 'enc/config.json'), /upsampling_ratios.*non-empty list/);
});
