// Builds WAV files byte by byte for the reader's tests (valid layouts and broken ones).

/** A RIFF file from chunks (id, body), each padded to an even size as the format requires. */
export function riff(chunks: [string, Uint8Array][]): Uint8Array {
  const parts: number[] = [...Buffer.from('WAVE')];
  for (const [id, body] of chunks) {
    const head = Buffer.alloc(8);
    head.write(id, 0, 'latin1');
    head.writeUInt32LE(body.length, 4);
    parts.push(...head, ...body, ...(body.length % 2 ? [0] : []));
  }
  const h = Buffer.alloc(8);
  h.write('RIFF', 0, 'latin1');
  h.writeUInt32LE(parts.length, 4);
  return Uint8Array.from([...h, ...parts]);
}

/** A 16-byte PCM fmt chunk body. */
export function fmtBody(channels: number, rate: number, bits: number, tag = 1): Uint8Array {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(tag, 0);
  b.writeUInt16LE(channels, 2);
  b.writeUInt32LE(rate, 4);
  b.writeUInt32LE((rate * channels * bits) / 8, 8);
  b.writeUInt16LE((channels * bits) / 8, 12);
  b.writeUInt16LE(bits, 14);
  return b;
}
