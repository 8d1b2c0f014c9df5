// The audio tests' tolerance against a golden: the issue's 1e-4 relative to the golden's peak
// (atol = 1e-4 x peak, rtol 1e-4), the scale at which float32 and float64 pipelines agree.
import * as k from '../../src/index.js';
import { assertClose } from '../helpers.js';

/** The largest |value| of a tensor. */
export const peakOf = (t: k.Tensor): number => t.toFloat32Array().reduce((m, v) => Math.max(m, Math.abs(v)), 0);

export function nearGolden(got: k.Tensor, want: k.Tensor, what: string, relToPeak = 1e-4): void {
  assertClose(got, want, { atol: relToPeak * peakOf(want), rtol: 1e-4, what });
}
