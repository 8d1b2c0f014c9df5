// Calibrated quantization of a model's Linears (kestrel quantize): the calibration sequences run
// through the float model once while every Linear's inputs are recorded (the first `maxRows`
// token rows, and mean |x| per input channel over all of them); then each Linear is replaced by a
// QuantLinear with AWQ's searched input-channel scales (awq.ts). The head is calibrated like the
// others; a tied head (no lm_head module) is recorded through a stand-in Linear over the tied
// embedding, so it too becomes a quantized lm_head (the embedding stays float for lookups).
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { tensor } from '../ops/creation.js';
import { noGrad } from '../tensor/grad_mode.js';
import type { Tensor } from '../tensor/tensor.js';
import { type AwqOptions, awqSearch } from './awq.js';
import { QuantLinear } from './quant_linear.js';

/** Stands in for a Linear while calibrating: records its inputs, returns its outputs. */
class InputRecorder extends Module {
  rows: Float32Array[] = [];
  kept = 0;
  seen = 0;
  readonly absSum: Float64Array;

  constructor(readonly inner: Linear, private readonly maxRows: number) {
    super();
    this.absSum = new Float64Array(inner.inFeatures);
  }

  forward(x: Tensor): Tensor {
    const K = this.inner.inFeatures;
    const v = x.toFloat32Array();
    for (let r = 0; r < v.length / K; r++) {
      const row = v.subarray(r * K, (r + 1) * K);
      for (let i = 0; i < K; i++) this.absSum[i] += Math.abs(row[i]);
      this.seen++;
      if (this.kept < this.maxRows) {
        this.rows.push(row.slice());
        this.kept++;
      }
    }
    return this.inner.forward(x);
  }
}

export interface CalibrateOptions extends AwqOptions {
  /** token rows kept per Linear for the α search (default 512) */
  maxRows?: number;
  /** quantize with α = 0 only (round to nearest, no calibration) */
  rtn?: boolean;
  /** the [V, D] embedding a tied model multiplies as its head; it gets a quantized lm_head */
  tiedHead?: Tensor;
  /** called after each Linear is quantized */
  onLayer?: (r: CalibratedLayer) => void;
}

export interface CalibratedLayer {
  path: string;
  alpha: number;
  error: number;
  rtnError: number;
}

/**
 * Quantizes every Linear of `model` (and a tied head) in place with AWQ scales searched on the
 * activations `run` produces (it runs the calibration forwards); returns each layer's result.
 * @example calibrateModel(model, () => { for (const ids of batches) model.forward({ inputIds: ids }) }, { type: 'q4' })
 */
export function calibrateModel(model: Module, run: () => void, o: CalibrateOptions): CalibratedLayer[] {
  const maxRows = o.maxRows ?? 512;
  const sites: { parent: Module; key: string; path: string; rec: InputRecorder }[] = [];
  for (const [path, m] of model.namedModules())
    for (const [key, v] of Object.entries(m))
      if (v instanceof Linear) sites.push({ parent: m, key, path: path ? `${path}.${key}` : key, rec: new InputRecorder(v, maxRows) });
  let headLinear: Linear | null = null;
  if (o.tiedHead) {
    if (Reflect.get(model, 'lm_head') !== undefined) throw new Error('calibrateModel: tiedHead given, but the model has its own lm_head');
    // a bias-free Linear viewing the embedding (not owning it: never disposed here)
    const [V, D] = o.tiedHead.shape;
    headLinear = Object.assign(Object.create(Linear.prototype) as Linear, { inFeatures: D, outFeatures: V, weight: o.tiedHead, bias: null });
    sites.push({ parent: model, key: 'lm_head', path: 'lm_head', rec: new InputRecorder(headLinear, maxRows) });
  }
  for (const s of sites) Reflect.set(s.parent, s.key, s.rec);
  try {
    noGrad(run);
  } finally {
    for (const s of sites) Reflect.set(s.parent, s.key, s.rec.inner === headLinear ? undefined : s.rec.inner);
  }
  const out: CalibratedLayer[] = [];
  for (const { parent, key, path, rec } of sites) {
    if (!rec.seen) throw new Error(`calibrateModel: the calibration run never reached ${path}`);
    const l = rec.inner;
    const [N, K] = [l.outFeatures, l.inFeatures];
    const meanAbs = Float32Array.from(rec.absSum, (v) => v / rec.seen);
    const flat = new Float32Array(rec.kept * K);
    rec.rows.forEach((r, i) => flat.set(r, i * K));
    const x = tensor(flat, { shape: [rec.kept, K], backend: l.weight.backendName });
    const r = awqSearch(l.weight.toFloat32Array(), [N, K], x, meanAbs, { ...o, grid: o.rtn ? 1 : o.grid });
    x.dispose();
    const bias = l.bias ? noGrad(() => l.bias!.clone()) : null;
    Reflect.set(parent, key, new QuantLinear(r.state, { bias, backend: l.weight.backendName }));
    if (l !== headLinear) l.dispose();
    const layer = { path, alpha: r.alpha, error: r.error, rtnError: r.rtnError };
    out.push(layer);
    o.onLayer?.(layer);
  }
  return out;
}
