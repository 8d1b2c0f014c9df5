// Module: parameters found by property name, state dicts (strict load naming missing,
// unexpected and mis-shaped keys), train/eval, freezing and dtype conversion.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';

k.setDefaultBackend('ref');

class Block extends k.nn.Module {
  q_proj = new k.nn.Linear(4, 6, { bias: false });
  norm = new k.nn.RMSNorm(6);
  layers = [new k.nn.Linear(6, 6), new k.nn.Linear(6, 2)];
  constructor() {
    super();
    this.registerBuffer('inv_freq', k.arange(0, 3, 1, { dtype: 'float32' }), false);
  }
  forward(x: k.Tensor): k.Tensor {
    return this.layers.reduce((h, l) => l.forward(h), this.norm.forward(this.q_proj.forward(x)));
  }
}

describe('nn.Module', () => {
  test('parameter names are property paths; shared parameters appear once', () => {
    const m = new Block();
    assert.deepEqual(m.namedParameters().map(([n]) => n), [
      'q_proj.weight', 'norm.weight', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias',
    ]);
    m.layers[1].weight = m.layers[0].weight.narrow(0, 0, 2); // not a parameter: a view
    assert.equal(m.parameters().length, 5);
    assert.deepEqual(Object.keys(m.stateDict()), m.namedParameters().map(([n]) => n), 'non-persistent buffers are not saved');
    assert.deepEqual(m.namedBuffers().map(([n]) => n), ['inv_freq']);
    assert.equal(k.memory.stats().current.param > 0, true);
    m.dispose();
  });

  test('loadStateDict copies values and reports mismatches by name', () => {
    const a = new Block();
    const b = new Block();
    const res = b.loadStateDict(a.stateDict());
    assert.deepEqual(res, { missing: [], unexpected: [] });
    for (const [n, p] of b.namedParameters()) assert.deepEqual(p.toArray(), a.stateDict()[n].toArray(), n);
    const sd = { ...a.stateDict() };
    delete (sd as Record<string, k.Tensor>)['norm.weight'];
    sd['extra.weight'] = k.zeros([1]);
    assert.throws(() => b.loadStateDict(sd), /missing keys \[norm.weight\], unexpected keys \[extra.weight\]/);
    assert.deepEqual(b.loadStateDict(sd, { strict: false }), { missing: ['norm.weight'], unexpected: ['extra.weight'] });
    const wrong = { ...a.stateDict(), 'q_proj.weight': k.zeros([6, 5]) };
    assert.throws(() => b.loadStateDict(wrong), /'q_proj.weight' has shape \[6, 5\] in the state dict but \[6, 4\] in the model/);
    // keys that every object inherits are keys like any other, never "present" by inheritance
    for (const name of ['constructor', 'toString', '__proto__']) {
      const extra: Record<string, k.Tensor> = { ...a.stateDict() };
      Object.defineProperty(extra, name, { value: k.zeros([1]), enumerable: true });
      assert.throws(() => b.loadStateDict(extra), new RegExp(`unexpected keys \\[${name}\\]`), name);
    }
    a.dispose();
    b.dispose();
  });

  test('train/eval, freezing, dtype conversion keeps names and values', () => {
    const m = new Block();
    m.eval();
    assert.equal(m.layers[0].training, false);
    m.requiresGrad_(false);
    assert.ok(m.parameters().every((p) => !p.requiresGrad));
    const before = m.stateDict()['layers.0.weight'].toArray();
    m.to('bfloat16');
    assert.ok(m.parameters().every((p) => p.dtype === 'bfloat16'));
    assert.equal((m.namedBuffers()[0][1]).dtype, 'bfloat16');
    const after = m.stateDict()['layers.0.weight'].toArray() as number[][];
    (before as number[][]).forEach((row, i) => row.forEach((v, j) => assert.equal(after[i][j], k.bf16ToF32(k.f32ToBf16(v)))));
    const y = k.tidy(() => m.forward(k.ones([2, 4], { dtype: 'bfloat16' })));
    assert.deepEqual(y.shape, [2, 2]);
    y.dispose();
    m.dispose();
  });

  test('gradients flow to every parameter', () => {
    const m = new Block();
    k.tidy(() => m.forward(k.randn([3, 4])).pow(2).sum().backward());
    for (const [n, p] of m.namedParameters()) assert.ok(p.grad && p.grad.storage.tag === 'grad', n);
    m.zeroGrad();
    assert.ok(m.parameters().every((p) => p.grad === null));
    m.dispose();
  });
});
