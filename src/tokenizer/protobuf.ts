// A minimal protobuf wire-format reader (varint, fixed32, fixed64, length-delimited), enough to
// walk SentencePiece's ModelProto without a protobuf dependency. Every read is bounds-checked so a
// truncated or corrupt file is an Error, never an out-of-range read.
// Reference: https://protobuf.dev/programming-guides/encoding/

/** One field of a message: its number, wire type and raw value (a number or a byte slice). */
export type ProtoField =
  | { readonly num: number; readonly wire: 0; readonly value: bigint }
  | { readonly num: number; readonly wire: 1 | 5; readonly value: Uint8Array }
  | { readonly num: number; readonly wire: 2; readonly value: Uint8Array };

/** Thrown by the reader; the caller adds the file name. */
export class ProtoError extends Error {}

function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new ProtoError(`truncated varint at byte ${pos}`);
    const b = buf[pos++];
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
  throw new ProtoError(`varint longer than 10 bytes at byte ${pos}`);
}

/**
 * Splits one message into its fields, in file order.
 * @example
 * for (const f of readFields(bytes)) if (f.num === 1 && f.wire === 2) pieces.push(f.value);
 */
export function* readFields(buf: Uint8Array): Generator<ProtoField> {
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [key, p] = readVarint(buf, pos);
    pos = p;
    const num = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (num === 0) throw new ProtoError(`field number 0 at byte ${start}`);
    if (wire === 0) {
      const [v, q] = readVarint(buf, pos);
      pos = q;
      yield { num, wire, value: v };
    } else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (pos + n > buf.length) throw new ProtoError(`truncated fixed${n * 8} field ${num} at byte ${start}`);
      yield { num, wire, value: buf.subarray(pos, pos + n) };
      pos += n;
    } else if (wire === 2) {
      const [len, q] = readVarint(buf, pos);
      pos = q;
      if (len > BigInt(buf.length - pos)) throw new ProtoError(`field ${num} at byte ${start} claims ${len} bytes, ${buf.length - pos} left`);
      yield { num, wire, value: buf.subarray(pos, pos + Number(len)) };
      pos += Number(len);
    } else {
      throw new ProtoError(`unsupported wire type ${wire} (field ${num}) at byte ${start}`);
    }
  }
}

// ignoreBOM: a piece may be U+FEFF itself (Llama 2 has one), which the default decoder would drop.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Field value helpers: each checks the wire type so a mistyped field is reported, not misread. */
export const proto = {
  string(f: ProtoField): string {
    if (f.wire !== 2) throw new ProtoError(`field ${f.num}: expected a string, got wire type ${f.wire}`);
    try {
      return utf8.decode(f.value);
    } catch {
      throw new ProtoError(`field ${f.num}: invalid UTF-8`);
    }
  },
  bytes(f: ProtoField): Uint8Array {
    if (f.wire !== 2) throw new ProtoError(`field ${f.num}: expected bytes, got wire type ${f.wire}`);
    return f.value;
  },
  float(f: ProtoField): number {
    if (f.wire !== 5) throw new ProtoError(`field ${f.num}: expected a float, got wire type ${f.wire}`);
    return new DataView(f.value.buffer, f.value.byteOffset, 4).getFloat32(0, true);
  },
  /** int32 / enum / bool; negative int32 values arrive as 10-byte two's-complement varints. */
  int(f: ProtoField): number {
    if (f.wire !== 0) throw new ProtoError(`field ${f.num}: expected a varint, got wire type ${f.wire}`);
    return Number(BigInt.asIntN(32, f.value));
  },
  bool(f: ProtoField): boolean {
    if (f.wire !== 0) throw new ProtoError(`field ${f.num}: expected a bool, got wire type ${f.wire}`);
    return f.value !== 0n;
  },
};
