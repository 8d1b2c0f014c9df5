// Element types: how each is stored (typed array), its size, and promotion between them.
// float16/bfloat16 are storage formats (raw bits in a Uint16Array); compute upcasts to float32.

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int32' | 'int64' | 'int8' | 'uint8' | 'bool';

export const DTYPES: readonly DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int32', 'int64', 'int8', 'uint8', 'bool'];

export type TypedArray =
  | Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array | Int8Array | Uint8Array;

interface DTypeInfo {
  bytes: number;
  float: boolean;
  make: (n: number) => TypedArray;
  /** rank within its kind for promotion (floats above ints above bool) */
  rank: number;
}

const INFO: Record<DType, DTypeInfo> = {
  float64: { bytes: 8, float: true, make: (n) => new Float64Array(n), rank: 14 },
  float32: { bytes: 4, float: true, make: (n) => new Float32Array(n), rank: 13 },
  bfloat16: { bytes: 2, float: true, make: (n) => new Uint16Array(n), rank: 12 },
  float16: { bytes: 2, float: true, make: (n) => new Uint16Array(n), rank: 12 },
  int64: { bytes: 8, float: false, make: (n) => new BigInt64Array(n), rank: 5 },
  int32: { bytes: 4, float: false, make: (n) => new Int32Array(n), rank: 4 },
  int8: { bytes: 1, float: false, make: (n) => new Int8Array(n), rank: 2 },
  uint8: { bytes: 1, float: false, make: (n) => new Uint8Array(n), rank: 3 },
  bool: { bytes: 1, float: false, make: (n) => new Uint8Array(n), rank: 0 },
};

export const dtypeBytes = (d: DType): number => INFO[d].bytes;
export const isFloat = (d: DType): boolean => INFO[d].float;
export const isHalf = (d: DType): boolean => d === 'float16' || d === 'bfloat16';
/** A zeroed typed array holding n elements of dtype d in its storage representation. */
export const makeArray = (d: DType, n: number): TypedArray => INFO[d].make(n);
/** A typed array of dtype d over n elements of buffer from byteOffset (a view: no copy, no zeroing). */
export function arrayView(d: DType, buffer: ArrayBuffer, byteOffset: number, n: number): TypedArray {
  const Ctor = INFO[d].make(0).constructor as new (b: ArrayBuffer, offset: number, length: number) => TypedArray;
  return new Ctor(buffer, byteOffset, n);
}

export function assertDType(d: string, where: string): DType {
  if (!(d in INFO)) throw new Error(`${where}: unknown dtype '${d}' (expected one of ${DTYPES.join(', ')})`);
  return d as DType;
}

/** Result dtype of a binary op (PyTorch's rules for tensor-tensor operands). */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a;
  if ((a === 'float16' && b === 'bfloat16') || (a === 'bfloat16' && b === 'float16')) return 'float32';
  if (a === 'uint8' && b === 'int8') return 'int32';
  if (a === 'int8' && b === 'uint8') return 'int32';
  return INFO[a].rank >= INFO[b].rank ? a : b;
}

/** The dtype kernels compute in: half types upcast to float32. */
export const computeDType = (d: DType): DType => (isHalf(d) ? 'float32' : d);

/** Throws unless data is the typed array that stores dtype (e.g. Uint16Array for bfloat16). */
export function assertArrayType(dtype: DType, data: TypedArray): void {
  const want = INFO[dtype].make(0).constructor;
  if (data.constructor !== want)
    throw new Error(`${dtype} data must be a ${want.name}, got ${data.constructor.name}`);
}

export const isDType = (s: string): s is DType => s in INFO;
