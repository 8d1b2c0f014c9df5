// Fused gated activation (SwiGLU / GeGLU, Shazeer 2020): equals gluComposite = act(gate) * up.
// Backward keeps only gate and up (not act(gate)) and recomputes the activation, as Unsloth's
// swiglu kernels do, so the MLP saves one [.., F] buffer less per layer:
//   dgate = dy * up * act'(gate),   dup = dy * act(gate)
// gate/up may be strided (the two halves of a fused gate_up projection): no copies are made.
// Half gate/up are upcast (and the result cast back) unless the backend's kernel takes them
// (halfElementwise): then gate, up and the saved tensors stay half.
import { backendOf } from '../../backend/index.js';
import type { GluActivation } from '../../backend/kernels.js';
import { isHalf } from '../../tensor/dtype.js';
import { sameShape, shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { halfDirect, to } from '../elementwise.js';

export function gluFused(gate: Tensor, up: Tensor, act: GluActivation): Tensor {
  inputs('glu', gate, up);
  if (!sameShape(gate.shape, up.shape)) throw new Error(`glu: gate ${shapeStr(gate.shape)} and up ${shapeStr(up.shape)} must have the same shape`);
  if (gate.dtype !== up.dtype) throw new Error(`glu: gate and up dtypes differ (${gate.dtype}, ${up.dtype})`);
  if (gate.dtype !== 'float32' && gate.dtype !== 'float64' && !halfDirect(gate)) {
    if (!isHalf(gate.dtype)) throw new Error(`glu: gate and up must be floating point, got ${gate.dtype}`);
    return tidy(() => to(gluFused(to(gate, 'float32'), to(up, 'float32'), act), gate.dtype));
  }
  const out = emptyLike(gate, gate.shape);
  const k = backendOf(gate).kernels;
  k.glu(act, gate, up, out);
  if (!needsGrad(gate, up)) return out;
  const [gs, us] = [save(gate), save(up)];
  return record('glu', out, [gate, up], (g) => {
    const dgate = gate.requiresGrad ? emptyLike(g, gs.shape) : null;
    const dup = up.requiresGrad ? emptyLike(g, us.shape) : null;
    k.gluBackward(act, gs, us, g, dgate, dup);
    return [dgate, dup];
  }, [gs, us]);
}
