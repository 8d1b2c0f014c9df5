// Layout = shape + strides + offset (in elements) over a storage; every view op is a layout
// transform and never copies (candle's layout.rs). Strides are >= 0; broadcast uses stride 0.

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

export const shapeStr = (s: Shape): string => `[${s.join(', ')}]`;

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Normalises a possibly negative dim against ndim, naming the op on error. */
export function normDim(dim: number, ndim: number, op: string): number {
  const d = dim < 0 ? dim + ndim : dim;
  if (!Number.isInteger(d) || d < 0 || d >= Math.max(ndim, 1) || (ndim === 0 && d !== 0))
    throw new Error(`${op}: dim ${dim} out of range for a ${ndim}-d tensor`);
  return d;
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(a: Shape, b: Shape, op: string): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1)
      throw new Error(`${op}: shapes ${shapeStr(a)} and ${shapeStr(b)} cannot be broadcast`);
    out[i] = x === 1 ? y : x;
  }
  return out;
}

export class Layout {
  readonly strides: readonly number[];
  constructor(
    readonly shape: Shape,
    strides?: readonly number[],
    readonly offset = 0,
  ) {
    this.strides = strides ?? contiguousStrides(shape);
  }

  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return numel(this.shape);
  }

  isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== s) return false;
      s *= this.shape[i];
    }
    return true;
  }

  /** Index one past the last element this layout can address (bounds of the storage it needs). */
  extent(): number {
    if (this.numel === 0) return this.offset;
    let last = this.offset;
    for (let i = 0; i < this.shape.length; i++) last += (this.shape[i] - 1) * this.strides[i];
    return last + 1;
  }

  permute(dims: readonly number[]): Layout {
    const n = this.ndim;
    const d = dims.map((x) => normDim(x, n, 'permute'));
    if (d.length !== n || new Set(d).size !== n)
      throw new Error(`permute: dims [${dims.join(', ')}] are not a permutation of ${n} dims`);
    return new Layout(d.map((i) => this.shape[i]), d.map((i) => this.strides[i]), this.offset);
  }

  narrow(dim: number, start: number, length: number): Layout {
    const d = normDim(dim, this.ndim, 'narrow');
    const size = this.shape[d];
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > size)
      throw new Error(`narrow: range [${start}, ${start + length}) out of bounds for dim ${dim} of size ${size}`);
    const shape = [...this.shape];
    shape[d] = length;
    return new Layout(shape, this.strides, this.offset + start * this.strides[d]);
  }

  expand(shape: Shape): Layout {
    const lead = shape.length - this.ndim;
    if (lead < 0) throw new Error(`expand: cannot expand ${shapeStr(this.shape)} to fewer dims ${shapeStr(shape)}`);
    const strides = shape.map((s, i) => {
      if (i < lead) return 0;
      const own = this.shape[i - lead];
      if (own === s) return this.strides[i - lead];
      if (own === 1) return 0;
      throw new Error(`expand: cannot expand ${shapeStr(this.shape)} to ${shapeStr(shape)}`);
    });
    return new Layout([...shape], strides, this.offset);
  }

  /**
   * A view with a new shape over the same elements, or null when the strides cannot express
   * it (then the caller copies). Splits and merges dims of each contiguous run (PyTorch's rule).
   */
  reshape(shape: Shape): Layout | null {
    if (numel(shape) !== this.numel)
      throw new Error(`reshape: cannot view ${shapeStr(this.shape)} (${this.numel} elements) as ${shapeStr(shape)}`);
    if (this.isContiguous()) return new Layout([...shape], undefined, this.offset);
    // Group old dims into runs that are contiguous among themselves, then map new dims onto runs.
    const oldShape = this.shape.filter((s) => s !== 1);
    const oldStrides = this.strides.filter((_, i) => this.shape[i] !== 1);
    const strides = new Array<number>(shape.length);
    let oi = 0;
    let ni = 0;
    while (ni < shape.length || oi < oldShape.length) {
      if (ni < shape.length && shape[ni] === 1) {
        strides[ni] = 1;
        ni++;
        continue;
      }
      if (oi >= oldShape.length || ni >= shape.length) return null;
      // one contiguous run of old dims [oi, oj) with total size equal to new dims [ni, nj)
      let oldSize = oldShape[oi];
      let oj = oi + 1;
      let newSize = shape[ni];
      let nj = ni + 1;
      while (oldSize !== newSize) {
        if (oldSize < newSize) {
          if (oj >= oldShape.length || oldStrides[oj - 1] !== oldStrides[oj] * oldShape[oj]) return null;
          oldSize *= oldShape[oj++];
        } else {
          while (nj < shape.length && shape[nj] === 1) strides[nj++] = 1;
          if (nj >= shape.length) return null;
          newSize *= shape[nj++];
        }
      }
      for (let k = oi + 1; k < oj; k++) if (oldStrides[k - 1] !== oldStrides[k] * oldShape[k]) return null;
      let st = oldStrides[oj - 1];
      for (let k = nj - 1; k >= ni; k--) {
        strides[k] = st;
        st *= shape[k];
      }
      oi = oj;
      ni = nj;
    }
    return new Layout([...shape], strides, this.offset);
  }
}
