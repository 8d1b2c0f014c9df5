// The paged KV-cache ops (src/ops/paged.ts): the ref kernel against the composite definition
// (indexSelect + scaledDotProductAttention) in float64 arithmetic, each native device's kernel (cpu,
// and cuda on a GPU or the emulator) against the ref kernel on odd lengths (1, 7, 33, 257 tokens)
// with GQA, windows, soft-capping and head dims 64, 7 (no 16-byte rows) and 33, and the whole write +
// attend path against plain causal attention over a contiguous cache: a ragged batch of sequences
// whose blocks are scattered through the pool must give each sequence the output it gets alone.
// Bad indices are errors that name the sequence, slot or block (cuda finds them on the device and
// throws at the next host read, so those tests read the result inside the assertion).
import { ALL_DEVICES, skipUnless } from '../devices.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { assertClose, seeded } from '../helpers.js';

const BS = 16;

interface Ragged {
  /** per sequence: its tokens' count, and which positions are queried this step */
  lengths: number[];
  queries: { seq: number; pos: number }[];
}

/** A pool with the sequences' blocks in a shuffled order, filled with seeded keys and values. */
function build(r: Ragged, H: number, Hkv: number, hd: number, backend: k.BackendName) {
  const need = r.lengths.map((L) => Math.ceil(L / BS));
  const total = need.reduce((a, b) => a + b, 0) + 1; // one spare block nobody uses
  const order = Array.from({ length: total }, (_, i) => (i * 7 + 3) % total); // a permutation (7 is coprime to small totals)
  let next = 0;
  const maxBlocks = Math.max(...need);
  const table = need.map((n) => Array.from({ length: maxBlocks }, (_, b) => (b < n ? order[next++] : 0)));
  const S = total * BS;
  const pool = (seed: number): k.Tensor => k.tensor(Float32Array.from(seeded(S * Hkv * hd, seed)), { shape: [S, Hkv, hd], backend });
  const q = k.tensor(Float32Array.from(seeded(r.queries.length * H * hd, 9)), { shape: [r.queries.length, H, hd], backend });
  const layout: k.PagedLayout = {
    blockTable: k.tensor(table, { dtype: 'int32', backend }),
    seq: k.tensor(r.queries.map((x) => x.seq), { dtype: 'int32', backend }),
    pos: k.tensor(r.queries.map((x) => x.pos), { dtype: 'int32', backend }),
    blockSize: BS,
  };
  return { q, kPool: pool(1), vPool: pool(2), layout, table };
}

const dispose = (b: ReturnType<typeof build>): void => {
  for (const t of [b.q, b.kPool, b.vPool, b.layout.blockTable, b.layout.seq, b.layout.pos]) t.dispose();
};

const ODD: Ragged = {
  lengths: [1, 7, 33, 257],
  // each sequence's last token (decode) plus a few earlier positions (a prefill chunk), block edges included
  queries: [{ seq: 0, pos: 0 }, { seq: 1, pos: 6 }, { seq: 2, pos: 15 }, { seq: 2, pos: 16 }, { seq: 2, pos: 32 }, { seq: 3, pos: 255 }, { seq: 3, pos: 256 }],
};

test('paged attention: ref kernel equals the composite definition (GQA, window, softcap)', () => {
  for (const opts of [{}, { window: 5 }, { softcap: 2.5, scale: 0.3 }]) {
    const b = build(ODD, 6, 2, 8, 'ref');
    const got = k.pagedAttention(b.q, b.kPool, b.vPool, b.layout, opts);
    const want = k.pagedAttentionComposite(b.q, b.kPool, b.vPool, b.layout, opts);
    // both float32 in and out; the ref kernel sums in float64, the composite in float64 on ref too
    assertClose(got, want, { atol: 1e-6, rtol: 1e-5, what: `ref vs composite ${JSON.stringify(opts)}` });
    for (const t of [got, want]) t.dispose();
    dispose(b);
  }
});

for (const device of ALL_DEVICES) {
  test(`paged attention: native ${device} kernel equals the ref kernel on 1, 7, 33, 257 tokens`, { skip: skipUnless(device) }, () => {
    for (const [H, Hkv, hd] of [[9, 3, 64], [4, 4, 7], [2, 1, 33]]) {
      for (const opts of [{}, { window: 9, softcap: 30 }]) {
        const ref = build(ODD, H, Hkv, hd, 'ref');
        const dev = build(ODD, H, Hkv, hd, device);
        const want = k.pagedAttention(ref.q, ref.kPool, ref.vPool, ref.layout, opts);
        const got = k.pagedAttention(dev.q, dev.kPool, dev.vPool, dev.layout, opts);
        // float32 sums in a different order than the ref's float64 (cuda: online softmax over 4 warps)
        assertClose(got, want, { atol: 2e-6, rtol: 1e-4, what: `${device} vs ref H=${H} Hkv=${Hkv} hd=${hd} ${JSON.stringify(opts)}` });
        for (const t of [got, want]) t.dispose();
        dispose(ref);
        dispose(dev);
      }
    }
  });
}

for (const backend of ['ref', ...ALL_DEVICES] as const) {
  test(`paged write + attention (${backend}) equals causal attention over each sequence's contiguous cache`, { skip: backend !== 'ref' && skipUnless(backend) }, () => {
    const [H, Hkv, hd] = [4, 2, 8];
    const lengths = [1, 7, 33];
    const b = build({ lengths, queries: [{ seq: 0, pos: 0 }] }, H, Hkv, hd, backend);
    // write every sequence's keys/values through pagedWrite_, then query all positions at once
    const keys = lengths.map((L, s) => k.tensor(Float32Array.from(seeded(L * Hkv * hd, 20 + s)), { shape: [L, Hkv, hd], backend }));
    const values = lengths.map((L, s) => k.tensor(Float32Array.from(seeded(L * Hkv * hd, 40 + s)), { shape: [L, Hkv, hd], backend }));
    const queries = lengths.map((L, s) => k.tensor(Float32Array.from(seeded(L * H * hd, 60 + s)), { shape: [L, H, hd], backend }));
    lengths.forEach((L, s) => {
      const slots = k.tensor(Array.from({ length: L }, (_, j) => b.table[s][Math.floor(j / BS)] * BS + (j % BS)), { dtype: 'int64', backend });
      k.pagedWrite_(b.kPool, keys[s], slots);
      k.pagedWrite_(b.vPool, values[s], slots);
      slots.dispose();
    });
    const seq = lengths.flatMap((L, s) => new Array<number>(L).fill(s));
    const pos = lengths.flatMap((L) => Array.from({ length: L }, (_, j) => j));
    const layout = { ...b.layout, seq: k.tensor(seq, { dtype: 'int32', backend }), pos: k.tensor(pos, { dtype: 'int32', backend }) };
    const out = k.pagedAttention(k.cat(queries, 0), b.kPool, b.vPool, layout);
    let row = 0;
    lengths.forEach((L, s) => {
      const heads = (t: k.Tensor): k.Tensor => t.transpose(0, 1).unsqueeze(0); // [1, heads, L, hd]
      const want = k.scaledDotProductAttention(heads(queries[s]), heads(keys[s]), heads(values[s]), { causal: true });
      const got = heads(out.narrow(0, row, L));
      assertClose(got, want, { atol: 1e-5, rtol: 1e-4, what: `sequence ${s} (${L} tokens) in the ragged batch` });
      row += L;
    });
    dispose(b);
  });
}

test('paged ops: bad indices name the query, slot or block', () => {
  const b = build({ lengths: [7], queries: [{ seq: 0, pos: 6 }] }, 2, 1, 4, 'ref');
  const bad = (pos: number[], seq: number[]): k.PagedLayout => ({ ...b.layout, pos: k.tensor(pos, { dtype: 'int32', backend: 'ref' }), seq: k.tensor(seq, { dtype: 'int32', backend: 'ref' }) });
  assert.throws(() => k.pagedAttention(b.q, b.kPool, b.vPool, bad([6], [3])), /sequence 3 outside the table's 1 rows/);
  assert.throws(() => k.pagedAttention(b.q, b.kPool, b.vPool, bad([99], [0])), /position 99 outside/);
  const slots = k.tensor([1000], { dtype: 'int64', backend: 'ref' });
  assert.throws(() => k.pagedWrite_(b.kPool, k.zeros([1, 1, 4], { backend: 'ref' }), slots), /slot 1000 of row 0 outside the pool's 32 slots/);
  assert.throws(() => k.pagedWrite_(b.kPool, k.zeros([1, 2, 4], { backend: 'ref' }), slots), /do not fit the pool/);
  dispose(b);
});

// cuda checks the indices on the device: the error comes at the next read, the bad query's output
// is zero and the bad slot's row is not written (the CPU refuses the whole call up front)
test('paged ops on cuda: bad indices name the query, slot or block at the next read', { skip: skipUnless('cuda') }, () => {
  const b = build({ lengths: [7], queries: [{ seq: 0, pos: 6 }] }, 2, 1, 4, 'cuda');
  const layout = (pos: number[], seq: number[], table = b.layout.blockTable): k.PagedLayout =>
    ({ ...b.layout, blockTable: table, pos: k.tensor(pos, { dtype: 'int32', backend: 'cuda' }), seq: k.tensor(seq, { dtype: 'int32', backend: 'cuda' }) });
  const throwsWith = (f: () => unknown, re: RegExp): void => assert.throws(f, (e: Error) => re.test(e.message), `expected ${re}`);
  throwsWith(() => k.pagedAttention(b.q, b.kPool, b.vPool, layout([6], [3])).toArray(), /paged_attention: query 0: sequence 3 outside the table's 1 rows/);
  throwsWith(() => k.pagedAttention(b.q, b.kPool, b.vPool, layout([99], [0])).toArray(), /query 0: position 99 outside the table's 16 tokens/);
  const badTable = k.tensor([[5]], { dtype: 'int32', backend: 'cuda' });
  throwsWith(() => k.pagedAttention(b.q, b.kPool, b.vPool, layout([6], [0], badTable)).toArray(), /sequence 0: block 5 outside the pool's 2 blocks/);
  // the failed query's output is zero, the good one beside it is computed
  const mixed = k.pagedAttention(k.cat([b.q, b.q], 0), b.kPool, b.vPool, layout([6, 6], [0, 2]));
  assert.throws(() => mixed.toArray(), /sequence 2 outside/);
  const rows = mixed.toArray() as number[][][];
  assert.ok(rows[1].flat().every((x) => x === 0), 'the bad query reads zeros');
  assert.ok(rows[0].flat().some((x) => x !== 0), 'the good query is attended');
  const before = b.kPool.toArray() as number[][][];
  const slots = k.tensor([1000, 3], { dtype: 'int64', backend: 'cuda' });
  const src = k.ones([2, 1, 4], { backend: 'cuda' });
  throwsWith(() => { k.pagedWrite_(b.kPool, src, slots); b.kPool.toArray(); }, /paged_write: slot 1000 of row 0 outside the pool's 32 slots/);
  const after = b.kPool.toArray() as number[][][];
  assert.deepEqual(after[3], [[1, 1, 1, 1]], 'the good row is written');
  assert.deepEqual(after.filter((_, i) => i !== 3), before.filter((_, i) => i !== 3), 'nothing else changed');
  assert.throws(() => k.pagedWrite_(b.kPool, k.zeros([1, 2, 4], { backend: 'cuda' }), slots), /do not fit the pool/);
  dispose(b);
});
