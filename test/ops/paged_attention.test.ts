// The paged KV-cache ops (src/ops/paged.ts): the ref kernel against the composite definition
// (indexSelect + scaledDotProductAttention) in float64 arithmetic, the native CPU kernel against
// the ref kernel on odd lengths (1, 7, 33, 257 tokens) with GQA, windows and soft-capping, and
// the whole write + attend path against plain causal attention over a contiguous cache: a ragged
// batch of sequences whose blocks are scattered through the pool must give each sequence the
// output it gets alone. Bad indices are errors that name the sequence, slot or block.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { assertClose, hasCpu, seeded } from '../helpers.js';

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

test('paged attention: native cpu kernel equals the ref kernel on 1, 7, 33, 257 tokens', { skip: !hasCpu() && 'native addon not built' }, () => {
  for (const [H, Hkv, hd] of [[9, 3, 64], [4, 4, 7], [2, 1, 33]]) {
    for (const opts of [{}, { window: 9, softcap: 30 }]) {
      const ref = build(ODD, H, Hkv, hd, 'ref');
      const cpu = build(ODD, H, Hkv, hd, 'cpu');
      const want = k.pagedAttention(ref.q, ref.kPool, ref.vPool, ref.layout, opts);
      const got = k.pagedAttention(cpu.q, cpu.kPool, cpu.vPool, cpu.layout, opts);
      assertClose(got, want, { atol: 2e-6, rtol: 1e-4, what: `cpu vs ref H=${H} Hkv=${Hkv} hd=${hd} ${JSON.stringify(opts)}` });
      for (const t of [got, want]) t.dispose();
      dispose(ref);
      dispose(cpu);
    }
  }
});

for (const backend of ['ref', 'cpu'] as const) {
  test(`paged write + attention (${backend}) equals causal attention over each sequence's contiguous cache`, { skip: backend === 'cpu' && !hasCpu() && 'native addon not built' }, () => {
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
