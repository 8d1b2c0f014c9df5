// Memory accounting and release: exact byte counts by tag, saved tensors freed by backward,
// the graph freed when its output is disposed, checkpoint() lowering the activation peak.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';

const backends = ['ref', ...(k.hasBackend('cpu') ? ['cpu'] : [])] as const;

function mlp(backend: string, depth: number, width: number) {
  const gen = new k.Generator(7);
  const ws = Array.from({ length: depth }, () =>
    k.keep(k.randn([width, width], { backend, generator: gen, tag: 'param' }).mul(0.3)),
  );
  for (const w of ws) {
    w.storage.tag = 'param';
    w.requiresGrad_();
  }
  const x = k.keep(k.randn([8, width], { backend, generator: gen }));
  return { ws, x };
}

const tagSum = (c: k.MemoryStats['current']): number => c.param + c.grad + c.optimizer + c.activation + c.other;

const block = (h: k.Tensor, w: k.Tensor): k.Tensor => k.tidy(() => k.dropout(h.matmul(w).tanh(), 0.1));

for (const backend of backends) {
  describe(`memory (${backend})`, () => {
    test('counts are exact and by tag', () => {
      const before = k.memory.stats().current;
      const t = k.zeros([10, 3], { backend }); // 120 bytes of float32
      const p = k.zeros([5], { backend, dtype: 'float64', tag: 'param' });
      const now = k.memory.stats().current;
      assert.equal(now.total - before.total, 120 + 40);
      assert.equal(now.param - before.param, 40);
      assert.equal(now.other - before.other, 120);
      t.dispose();
      p.dispose();
      assert.deepEqual(k.memory.stats().current, before);
    });

    test('atPeak holds every tag at the moment the total peaked', () => {
      k.memory.resetPeak();
      const base = k.memory.stats().current;
      // the peak (400 + 80 bytes) is reached while the param and the first activation are alive;
      // after the activation is freed, a smaller one raises the activation tag no higher
      const p = k.zeros([20], { backend, tag: 'param' }); // 80 bytes
      const a = k.zeros([100], { backend, tag: 'activation' }); // 400 bytes
      a.dispose();
      const o = k.zeros([10], { backend }); // 40 bytes of 'other', after the peak
      const s = k.memory.stats();
      assert.equal(s.peak.total - base.total, 480);
      assert.equal(s.atPeak.total, s.peak.total);
      assert.equal(s.atPeak.param - base.param, 80);
      assert.equal(s.atPeak.activation - base.activation, 400);
      assert.equal(s.atPeak.other - base.other, 0, 'the later other tensor is not part of the peak');
      assert.equal(tagSum(s.atPeak), s.atPeak.total);
      p.dispose();
      o.dispose();
      k.memory.resetPeak();
      assert.deepEqual(k.memory.stats().atPeak, k.memory.stats().current, 'resetPeak starts atPeak at the current counts');
    });

    test('views share storage; the last dispose frees it', () => {
      const before = k.memory.stats().current.total;
      const t = k.zeros([4, 4], { backend });
      const v = k.tidy(() => t.transpose().narrow(0, 1, 2));
      t.dispose();
      assert.equal(k.memory.stats().current.total - before, 64);
      v.dispose();
      assert.equal(k.memory.stats().current.total, before);
    });

    test('saved tensors are freed by backward: memory returns to params + grads', () => {
      const { ws, x } = mlp(backend, 3, 16);
      const base = k.memory.stats().current;
      const loss = k.tidy(() => ws.reduce(block, x).sum());
      assert.ok(k.memory.stats().current.activation > base.activation, 'the graph holds activations');
      loss.backward();
      loss.dispose();
      const after = k.memory.stats().current;
      const gradBytes = ws.reduce((s, w) => s + w.grad!.storage.bytes, 0);
      assert.equal(after.activation, base.activation);
      assert.equal(after.grad - base.grad, gradBytes);
      assert.equal(after.total - base.total, gradBytes);
      for (const w of [...ws, x]) w.dispose();
    });

    test('disposing an output without backward frees its graph', () => {
      const { ws, x } = mlp(backend, 2, 8);
      const base = k.memory.stats().current.total;
      const loss = k.tidy(() => ws.reduce(block, x).sum());
      loss.dispose();
      assert.equal(k.memory.stats().current.total, base);
      for (const w of [...ws, x]) w.dispose();
    });

    test('checkpoint(): bit-identical gradients, lower activation peak', () => {
      const run = (ckpt: boolean) => {
        const { ws, x } = mlp(backend, 6, 32);
        k.manualSeed(3);
        k.memory.resetPeak();
        const base = k.memory.stats().current.activation;
        const loss = k.tidy(() => ws.reduce((h, w) => (ckpt ? k.checkpoint((a) => block(a, w), h) : block(h, w)), x).sum());
        const peakForward = k.memory.stats().peak.activation - base;
        loss.backward();
        const peak = k.memory.stats().peak.activation - base;
        loss.dispose();
        const grads = ws.map((w) => Array.from(w.grad!.toFloat32Array()));
        const left = k.memory.stats().current.activation - base;
        for (const w of [...ws, x]) w.dispose();
        return { grads, peakForward, peak, left };
      };
      const plain = run(false);
      const ck = run(true);
      assert.deepEqual(ck.grads, plain.grads, 'gradients must be bit-identical');
      assert.ok(ck.peakForward < plain.peakForward / 2, `forward activation peak ${ck.peakForward} vs ${plain.peakForward}`);
      assert.ok(ck.peak < plain.peak, `activation peak ${ck.peak} vs ${plain.peak}`);
      assert.equal(ck.left, 0);
      assert.equal(plain.left, 0);
    });
  });
}
