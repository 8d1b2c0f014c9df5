// Reference paged-cache kernels in float64 (the oracle for native/paged_attention.cc):
//   pagedWrite:     pool[slots[i]] = src[i]
//   pagedAttention: for query n of sequence s = seq[n] at position p = pos[n], key j (lo <= j <= p,
//   lo = max(0, p - window + 1)) lives in slot table[s, j / bs] * bs + j % bs;
//   out[n, h] = sum_j softmax_j(softcap(scale q[n, h].k_j)) v_j, kv head g = h / (H / Hkv).
import type { PagedKernels } from '../kernels.js';
import { load, store } from './storage.js';

const fail = (kernel: string, why: string): never => {
  throw new Error(`${kernel}: ${why}`);
};

export const pagedWrite: PagedKernels['pagedWrite'] = (src, slots, pool) => {
  const [S, Hkv, hd] = pool.layout.shape;
  const row = Hkv * hd;
  const ids = load(slots);
  const x = load(src);
  const p = load(pool);
  if (x.length !== ids.length * row) fail('pagedWrite', `src [${src.layout.shape}] does not hold ${ids.length} rows of [${Hkv}, ${hd}]`);
  ids.forEach((slot, i) => {
    if (!Number.isInteger(slot) || slot < 0 || slot >= S) fail('pagedWrite', `slot ${slot} of row ${i} outside the pool's ${S} slots`);
    p.set(x.subarray(i * row, (i + 1) * row), slot * row);
  });
  store(pool, p);
};

export const pagedAttention: PagedKernels['pagedAttention'] = (q, kPool, vPool, table, seq, pos, opts, out) => {
  const [N, H, hd] = q.layout.shape;
  const [S, Hkv] = kPool.layout.shape;
  const [numSeqs, maxBlocks] = table.layout.shape;
  const bs = opts.blockSize;
  const [qv, kv, vv, tv, sv, pv] = [load(q), load(kPool), load(vPool), load(table), load(seq), load(pos)];
  const o = new Float64Array(N * H * hd);
  for (let n = 0; n < N; n++) {
    const s = sv[n];
    const p = pv[n];
    if (s < 0 || s >= numSeqs) fail('pagedAttention', `query ${n}: sequence ${s} outside the table's ${numSeqs} rows`);
    if (p < 0 || p >= maxBlocks * bs) fail('pagedAttention', `query ${n}: position ${p} outside the table's ${maxBlocks * bs} tokens`);
    const lo = opts.window > 0 ? Math.max(0, p - opts.window + 1) : 0;
    const slots: number[] = [];
    for (let j = lo; j <= p; j++) {
      const block = tv[s * maxBlocks + Math.floor(j / bs)];
      if (block < 0 || (block + 1) * bs > S) fail('pagedAttention', `sequence ${s}: block ${block} outside the pool's ${S / bs} blocks`);
      slots.push(block * bs + (j % bs));
    }
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / Hkv));
      const z = slots.map((slot) => {
        let dot = 0;
        for (let c = 0; c < hd; c++) dot += qv[(n * H + h) * hd + c] * kv[(slot * Hkv + g) * hd + c];
        const x = opts.scale * dot;
        return opts.softcap > 0 ? opts.softcap * Math.tanh(x / opts.softcap) : x;
      });
      const m = Math.max(...z);
      const e = z.map((x) => Math.exp(x - m));
      const sum = e.reduce((a, b) => a + b, 0);
      slots.forEach((slot, i) => {
        for (let c = 0; c < hd; c++) o[(n * H + h) * hd + c] += (e[i] / sum) * vv[(slot * Hkv + g) * hd + c];
      });
    }
  }
  store(out, o);
};
