// A node with several outputs on a tape whose nodes have one (torch's multi-output Function). Each
// output gets a small slot node that hands its gradient to the shared node and passes on a
// placeholder; the shared node runs after every slot (it was recorded first) and sees the real
// gradients, `undefined` for outputs that did not reach the loss. No output is copied or concatenated.
import { zeros } from '../ops/creation.js';
import { record } from '../ops/dispatch.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * Records outs = f(ins) as one node: backward gets one gradient per output and returns one per input.
 * @example const [q, k, v] = recordMulti('qkv', [q, k, v], [x, w], (gs) => [dx, dw], saved)
 */
export function recordMulti(
  name: string,
  outs: Tensor[],
  ins: readonly (Tensor | null | undefined)[],
  backward: (gs: (Tensor | undefined)[]) => (Tensor | null)[],
  saved: Tensor[],
): Tensor[] {
  const first = outs[0];
  const hub = zeros([1], { dtype: first.dtype, backend: first.backendName });
  const got: (Tensor | undefined)[] = outs.map(() => undefined);
  const drop = (): void => {
    for (const [i, g] of got.entries()) {
      g?.dispose();
      got[i] = undefined;
    }
  };
  record(name, hub, ins, () => {
    try {
      return backward(got);
    } finally {
      drop();
    }
  }, saved);
  if (!hub.requiresGrad) {
    hub.dispose();
    return outs; // grad mode off or no input needs grad: record freed `saved`
  }
  const res = outs.map((out, i) => record(`${name}[${i}]`, out, [hub], (g) => {
    got[i]?.dispose(); // a slot runs once per backward pass; the engine already summed its consumers
    got[i] = g.alias({ untracked: true });
    return [zeros([1], { dtype: hub.dtype, backend: hub.backendName })];
  }));
  hub.dispose();
  return res;
}
