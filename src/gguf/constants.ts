// GGUF's numeric codes, as ggml's docs/gguf.md and gguf-py's constants.py define them: the
// metadata value types, the tensor (ggml) types with their block layout, and the file types
// (general.file_type) llama.cpp reports. Only the types Kestrel writes or reads are listed.

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** gguf_metadata_value_type */
export const enum ValueType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

/** The tensor types Kestrel writes and reads (ggml_type ids). */
export type GgmlTypeName = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K';

/** id, elements per block and bytes per block (ggml.c's type_traits). */
export const GGML_TYPES: Record<GgmlTypeName, { id: number; blockSize: number; typeSize: number }> = {
  F32: { id: 0, blockSize: 1, typeSize: 4 },
  F16: { id: 1, blockSize: 1, typeSize: 2 },
  Q4_0: { id: 2, blockSize: 32, typeSize: 2 + 16 },
  Q8_0: { id: 8, blockSize: 32, typeSize: 2 + 32 },
  Q4_K: { id: 12, blockSize: 256, typeSize: 2 + 2 + 12 + 128 },
  Q6_K: { id: 14, blockSize: 256, typeSize: 128 + 64 + 16 + 2 },
  BF16: { id: 30, blockSize: 1, typeSize: 2 },
};

const BY_ID = new Map(Object.entries(GGML_TYPES).map(([name, t]) => [t.id, name as GgmlTypeName]));

/** The name of ggml type `id`, or null for a type Kestrel does not read. */
export const ggmlTypeName = (id: number): GgmlTypeName | null => BY_ID.get(id) ?? null;

/** Bytes of `n` elements of type t (n a multiple of its block size). */
export function ggmlBytes(t: GgmlTypeName, n: number): number {
  const { blockSize, typeSize } = GGML_TYPES[t];
  if (n % blockSize !== 0) throw new Error(`gguf: ${n} elements of ${t} are not a whole number of ${blockSize}-element blocks`);
  return (n / blockSize) * typeSize;
}

/** What `kestrel export --type` offers, and the llama_ftype it records in general.file_type. */
export const EXPORT_TYPES = { f32: 0, f16: 1, bf16: 32, q8_0: 7, q4_0: 2, q4_k_m: 15 } as const;
export type ExportType = keyof typeof EXPORT_TYPES;
