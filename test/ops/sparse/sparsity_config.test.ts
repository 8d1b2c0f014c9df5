// DeepSpeed's sparsity layouts against masks worked out by hand from sparsity_config.py's rules
// (rows = query blocks, columns = key blocks, '1' = computed), and the invariants every layout keeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockLayout } from '../../../src/ops/sparse/block_layout.js';
import { SPARSITY_MODES, makeLayout, parseSparsityConfig } from '../../../src/ops/sparse/sparsity_config.js';

/** Head h of a layout as one string of 0/1 per query block. */
function rows(l: BlockLayout, h = 0): string[] {
  return Array.from({ length: l.nBlocks }, (_, i) =>
    Array.from({ length: l.nBlocks }, (_, j) => (l.get(h, i, j) ? '1' : '0')).join(''));
}
const layout = (cfg: object, seqLen: number, heads = 1): BlockLayout => makeLayout(parseSparsityConfig(cfg), heads, seqLen);

test('fixed: local windows of 2 blocks, the last block of each window global', () => {
  const base = { mode: 'fixed', block: 2, num_local_blocks: 2, num_global_blocks: 1 };
  // bidirectional: windows {0,1}, {2,3}; global columns 1 and 3 seen by every row
  assert.deepEqual(rows(layout(base, 8)), ['1101', '1101', '0111', '0111']);
  // unidirectional: lower triangles of the windows; global column c seen from row c on
  assert.deepEqual(rows(layout({ ...base, attention: 'unidirectional' }, 8)), ['1000', '1100', '0110', '0111']);
  // 5 blocks (a partial window {4}): its global block is min(4 + 1, 5 - 1) = 4
  assert.deepEqual(rows(layout({ ...base, attention: 'unidirectional' }, 10)), ['10000', '11000', '01100', '01110', '01011']);
  // odd length: 7 tokens in blocks of 2 = 4 blocks, the last one partial
  assert.deepEqual(rows(layout(base, 7)), ['1101', '1101', '0111', '0111']);
});

test('fixed: different global patterns per head, horizontal global attention', () => {
  const cfg = { mode: 'fixed', block: 4, num_local_blocks: 2, num_global_blocks: 1, different_layout_per_head: true, num_different_global_patterns: 2 };
  const l = layout(cfg, 16, 3);
  assert.deepEqual(rows(l, 0), ['1101', '1101', '0111', '0111']);
  // head 1 takes the first block of each window (columns 0 and 2)
  assert.deepEqual(rows(l, 1), ['1110', '1110', '1011', '1011']);
  assert.deepEqual(rows(l, 2), rows(l, 0));
  // horizontal: the global blocks 1 and 3 also attend everything
  assert.deepEqual(rows(layout({ mode: 'fixed', block: 1, num_local_blocks: 2, horizontal_global_attention: true }, 4)),
    ['1101', '1111', '0111', '1111']);
});

test('variable: windows of 1, 2, then 2s; global block 4', () => {
  const base = { mode: 'variable', block: 3, local_window_blocks: [1, 2], global_block_indices: [4] };
  assert.deepEqual(rows(layout({ ...base, attention: 'unidirectional' }, 18)),
    ['100000', '010000', '011000', '000100', '000110', '000011']);
  assert.deepEqual(rows(layout({ ...base, horizontal_global_attention: true }, 18)),
    ['100010', '011010', '011010', '000110', '111111', '000011']);
  // global_block_end_indices: blocks [1, 3) global
  assert.deepEqual(rows(layout({ mode: 'variable', block: 1, local_window_blocks: [1], global_block_indices: [1], global_block_end_indices: [3] }, 4)),
    ['1110', '0110', '0110', '0111']);
});

test('bigbird: sliding window of 3, global block 0, random blocks seeded', () => {
  assert.deepEqual(rows(layout({ mode: 'bigbird', block: 2, num_random_blocks: 0 }, 8)), ['1111', '1110', '1111', '1011']);
  assert.deepEqual(rows(layout({ mode: 'bigbird', block: 2, num_random_blocks: 0, attention: 'unidirectional' }, 8)),
    ['1000', '1100', '1110', '1011']);
  // 3 random blocks on a diagonal-only window: every row keeps its diagonal, column 0 and the draws
  const cfg = { mode: 'bigbird', block: 1, num_random_blocks: 3, num_sliding_window_blocks: 1, seed: 7 };
  const a = layout(cfg, 16);
  assert.deepEqual(rows(a), rows(layout(cfg, 16)), 'same seed, same layout');
  assert.notDeepEqual(rows(a), rows(layout({ ...cfg, seed: 8 }, 16)), 'another seed, other random blocks');
  assert.equal(rows(a)[0], '1'.repeat(16), 'the global block attends everything');
  for (const [i, r] of rows(a).entries()) {
    if (i === 0) continue;
    const on = [...r].filter((c) => c === '1').length;
    assert.ok(r[i] === '1' && r[0] === '1' && on >= 3 && on <= 5, `row ${i} '${r}': diagonal, column 0 and 3 random blocks`);
  }
});

test('bslongformer and local_sliding_window', () => {
  assert.deepEqual(rows(layout({ mode: 'bslongformer', block: 2 }, 10)), ['11111', '11100', '11110', '10111', '10011']);
  assert.deepEqual(rows(layout({ mode: 'bslongformer', block: 2, attention: 'unidirectional' }, 10)),
    ['10000', '11000', '11100', '10110', '10011']);
  assert.deepEqual(rows(layout({ mode: 'local_sliding_window', block: 2 }, 8)), ['1000', '1100', '0110', '0011']);
  assert.deepEqual(rows(layout({ mode: 'local_sliding_window', block: 2, attention: 'bidirectional' }, 8)), ['1100', '1110', '0111', '0011']);
  assert.deepEqual(rows(layout({ mode: 'dense', block: 4 }, 9)), ['111', '111', '111']);
});

test('unidirectional layouts never attend a later block, for every mode', () => {
  for (const mode of SPARSITY_MODES) {
    if (mode === 'dense') continue;
    const cfg = { mode, block: 1, attention: 'unidirectional', num_random_blocks: 2, different_layout_per_head: mode !== 'local_sliding_window',
      ...(mode === 'fixed' ? { num_local_blocks: 4, num_different_global_patterns: 4, num_random_blocks: undefined } : {}) };
    const l = layout(cfg, 23, 4);
    for (let h = 0; h < 4; h++)
      for (let i = 0; i < l.nBlocks; i++) {
        assert.ok(l.get(h, i, i) || mode === 'variable', `${mode}: head ${h} block ${i} sees its own block`);
        for (let j = i + 1; j < l.nBlocks; j++) assert.ok(!l.get(h, i, j), `${mode}: head ${h} block ${i} attends later block ${j}`);
      }
  }
});

test('the element mask, CSR and CSC of a layout agree with its blocks', () => {
  const l = layout({ mode: 'local_sliding_window', block: 2 }, 5);
  // blocks ['100', '110', '011'] -> tokens 0..4, causal within the diagonal blocks
  const m = l.elementMask(5, 5, true);
  const elems = Array.from({ length: 5 }, (_, i) => [...m.subarray(i * 5, i * 5 + 5)].join(''));
  assert.deepEqual(elems, ['10000', '11000', '11100', '11110', '00111']);
  // the last query alone (decode: Tq 1 at position 4) sees the last row
  assert.deepEqual([...l.elementMask(1, 5, true)].join(''), '00111');
  const r = l.rows(3);
  assert.deepEqual([...r.ptr], [0, 1, 3, 5]);
  assert.deepEqual([...r.idx], [0, 0, 1, 1, 2]);
  const c = l.cols(3);
  assert.deepEqual([...c.ptr], [0, 2, 4, 5]);
  assert.deepEqual([...c.idx], [0, 1, 1, 2, 2]);
  assert.equal(l.density(), 5 / 9);
  assert.throws(() => l.blocksFor(7), /7 tokens need 4 blocks of 2, the layout has 3/);
});

test('bad sparsity configs name the field', () => {
  assert.throws(() => parseSparsityConfig({ mode: 'strided' }, 'run.json'), /run\.json\.mode must be one of dense, fixed/);
  assert.throws(() => parseSparsityConfig({ mode: 'fixed', block: 0 }), /sparse_attention\.block must be an integer >= 1, got 0/);
  assert.throws(() => parseSparsityConfig({ mode: 'fixed', num_local_blocks: 3, num_global_blocks: 2 }), /num_local_blocks 3 must be a multiple of num_global_blocks 2/);
  assert.throws(() => parseSparsityConfig({ mode: 'fixed', num_different_global_patterns: 2 }), /needs different_layout_per_head true/);
  assert.throws(() => parseSparsityConfig({ mode: 'variable', global_block_indices: [2], global_block_end_indices: [1] }), /start 2 must be below its end 1/);
  assert.throws(() => parseSparsityConfig({ mode: 'bigbird', attention: 'causal' }), /attention must be 'unidirectional' or 'bidirectional'/);
  assert.throws(() => parseSparsityConfig({ mode: 'bigbird', blocks: 16 }), /unknown key 'blocks'/);
  assert.throws(() => parseSparsityConfig({ mode: 'bslongformer', attention: 'unidirectional', horizontal_global_attention: true }), /horizontal_global_attention needs/);
  assert.throws(() => layout({ mode: 'bigbird', block: 1, num_sliding_window_blocks: 5 }, 4), /num_sliding_window_blocks 5 exceeds the 4 blocks/);
});
