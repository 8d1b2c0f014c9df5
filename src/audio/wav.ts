// WAV (RIFF/WAVE) reading and writing of the project's own: PCM 8-bit unsigned and 16/24/32-bit
// signed, IEEE float 32/64, any channel count, WAVE_FORMAT_EXTENSIBLE (the real format is the first
// two bytes of the subformat GUID), chunks walked by id and size with the pad byte after odd sizes.
// Samples scale by 2^-(bits-1) (u8: (v - 128) / 128) as soundfile and torchaudio.load return them.
// Every size is checked against the file before a byte is read, and errors name the file.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

/** Decoded audio: planar float32 samples, channel c at [c * frames, (c + 1) * frames). */
export interface DecodedAudio {
  data: Float32Array;
  channels: number;
  frames: number;
  sampleRate: number;
}

const FORMAT_PCM = 1;
const FORMAT_FLOAT = 3;
const FORMAT_EXTENSIBLE = 0xfffe;
// KSDATAFORMAT_SUBTYPE_* GUIDs: the format code, then this fixed tail
const GUID_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

interface WavFormat {
  format: number;
  channels: number;
  sampleRate: number;
  blockAlign: number;
  bits: number;
}

/** True when the bytes start like a RIFF/WAVE file. */
export const isRiffWave = (b: Uint8Array): boolean =>
  b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WAVE';

function ascii(b: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...b.subarray(at, at + n));
}

function parseFmt(v: DataView, at: number, size: number, file: string): WavFormat {
  if (size < 16) throw new Error(`${file}: fmt chunk of ${size} bytes is too short (needs 16)`);
  let format = v.getUint16(at, true);
  const channels = v.getUint16(at + 2, true);
  const sampleRate = v.getUint32(at + 4, true);
  const blockAlign = v.getUint16(at + 12, true);
  const bits = v.getUint16(at + 14, true);
  if (format === FORMAT_EXTENSIBLE) {
    if (size < 40) throw new Error(`${file}: WAVE_FORMAT_EXTENSIBLE fmt chunk of ${size} bytes is too short (needs 40)`);
    format = v.getUint16(at + 24, true); // subformat GUID's first two bytes
  }
  if (channels === 0) throw new Error(`${file}: fmt chunk declares 0 channels`);
  if (sampleRate === 0) throw new Error(`${file}: fmt chunk declares a sample rate of 0 Hz`);
  const pcmOk = format === FORMAT_PCM && [8, 16, 24, 32].includes(bits);
  const floatOk = format === FORMAT_FLOAT && (bits === 32 || bits === 64);
  if (!pcmOk && !floatOk)
    throw new Error(`${file}: unsupported WAV encoding (format tag ${format}, ${bits} bits); PCM 8/16/24/32-bit and float 32/64-bit are read (other encodings: convert with ffmpeg)`);
  if (blockAlign !== channels * (bits / 8))
    throw new Error(`${file}: fmt block align ${blockAlign} != ${channels} channels x ${bits / 8} bytes`);
  return { format, channels, sampleRate, blockAlign, bits };
}

/** Reads one sample (bytes at `at`) as a float in [-1, 1]. */
function sampleReader(f: WavFormat, v: DataView): (at: number) => number {
  if (f.format === FORMAT_FLOAT) return f.bits === 32 ? (at) => v.getFloat32(at, true) : (at) => v.getFloat64(at, true);
  switch (f.bits) {
    case 8: return (at) => (v.getUint8(at) - 128) / 128;
    case 16: return (at) => v.getInt16(at, true) / 32768;
    // little-endian 24-bit: the top byte read signed carries the sign
    case 24: return (at) => (v.getUint8(at) | (v.getUint8(at + 1) << 8) | (v.getInt8(at + 2) << 16)) / 8388608;
    default: return (at) => v.getInt32(at, true) / 2147483648;
  }
}

/**
 * Decodes a WAV file's bytes; `file` names it in errors.
 * @example parseWav(readFileSync('a.wav'), 'a.wav').sampleRate  // 16000
 */
export function parseWav(bytes: Uint8Array, file: string): DecodedAudio {
  if (!isRiffWave(bytes)) throw new Error(`${file}: not a WAV file (no RIFF/WAVE header; it starts with ${JSON.stringify(ascii(bytes, 0, Math.min(12, bytes.length)))})`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let fmt: WavFormat | null = null;
  let pos = 12;
  while (pos + 8 <= bytes.length) {
    const id = ascii(bytes, pos, 4);
    const size = v.getUint32(pos + 4, true);
    const body = pos + 8;
    if (body + size > bytes.length)
      throw new Error(`${file}: chunk '${id}' at byte ${pos} declares ${size} bytes but only ${bytes.length - body} remain (truncated or corrupt file)`);
    if (id === 'fmt ') fmt = parseFmt(v, body, size, file);
    else if (id === 'data') {
      if (!fmt) throw new Error(`${file}: data chunk at byte ${pos} comes before any fmt chunk`);
      return decodeData(v, body, size, fmt);
    }
    pos = body + size + (size & 1); // odd sizes are followed by one pad byte
  }
  throw new Error(`${file}: no data chunk${fmt ? '' : ' and no fmt chunk'} in ${bytes.length} bytes`);
}

function decodeData(v: DataView, at: number, size: number, f: WavFormat): DecodedAudio {
  // a trailing partial frame is dropped, as libsndfile does
  const frames = Math.floor(size / f.blockAlign);
  const data = new Float32Array(frames * f.channels);
  const read = sampleReader(f, v);
  const width = f.bits / 8;
  for (let c = 0; c < f.channels; c++) {
    const out = data.subarray(c * frames, (c + 1) * frames);
    for (let i = 0, p = at + c * width; i < frames; i++, p += f.blockAlign) out[i] = read(p);
  }
  return { data, channels: f.channels, frames, sampleRate: f.sampleRate };
}

/** Reads and decodes a WAV file. */
export const readWav = (path: string): DecodedAudio => parseWav(readFileSync(path), path);

/** WAV sample encodings saveWav writes. */
export interface WavWriteOptions {
  /** bits per sample: 8 (unsigned), 16, 24 or 32 PCM, or 32 / 64 with float (default 16) */
  bits?: 8 | 16 | 24 | 32 | 64;
  /** IEEE float samples instead of PCM (default false) */
  float?: boolean;
}

/** One sample written at `at`: PCM rounds x 2^(bits-1) and clips, so reading it back is exact for k / 2^(bits-1). */
function sampleWriter(bits: number, float: boolean, v: DataView): (at: number, x: number) => void {
  const q = (x: number, full: number): number => Math.max(-full, Math.min(full - 1, Math.round(x * full)));
  if (float) return bits === 32 ? (at, x) => v.setFloat32(at, x, true) : (at, x) => v.setFloat64(at, x, true);
  switch (bits) {
    case 8: return (at, x) => v.setUint8(at, q(x, 128) + 128);
    case 16: return (at, x) => v.setInt16(at, q(x, 32768), true);
    case 24: return (at, x) => {
      const s = q(x, 8388608);
      v.setUint8(at, s & 0xff);
      v.setUint8(at + 1, (s >> 8) & 0xff);
      v.setInt8(at + 2, s >> 16);
    };
    default: return (at, x) => v.setInt32(at, q(x, 2147483648), true);
  }
}

/**
 * Encodes planar samples as a WAV file: the plain 16-byte fmt for 8/16-bit PCM and float (with the
 * fact chunk float files carry), WAVE_FORMAT_EXTENSIBLE where the format asks for it (24/32-bit PCM
 * or more than 2 channels).
 */
export function encodeWav(a: DecodedAudio, opts: WavWriteOptions = {}): Uint8Array {
  const float = opts.float ?? false;
  const bits = opts.bits ?? (float ? 32 : 16);
  const okBits = float ? bits === 32 || bits === 64 : [8, 16, 24, 32].includes(bits);
  if (!okBits) throw new Error(`saveWav: ${bits}-bit ${float ? 'float' : 'PCM'} is not a WAV encoding (PCM 8/16/24/32, float 32/64)`);
  const blockAlign = a.channels * (bits / 8);
  const dataBytes = a.frames * blockAlign;
  if (dataBytes > 0xffffffff - 100) throw new Error(`saveWav: ${dataBytes} bytes of samples exceed the 4 GiB a RIFF size can hold`);
  const extensible = !float && (bits > 16 || a.channels > 2);
  const fmtBytes = extensible ? 40 : float ? 18 : 16;
  const factBytes = float ? 12 : 0;
  const total = 12 + 8 + fmtBytes + factBytes + 8 + dataBytes + (dataBytes & 1);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  const tag = (at: number, s: string): void => [...s].forEach((ch, i) => v.setUint8(at + i, ch.charCodeAt(0)));
  tag(0, 'RIFF');
  v.setUint32(4, total - 8, true);
  tag(8, 'WAVE');
  tag(12, 'fmt ');
  v.setUint32(16, fmtBytes, true);
  v.setUint16(20, extensible ? FORMAT_EXTENSIBLE : float ? FORMAT_FLOAT : FORMAT_PCM, true);
  v.setUint16(22, a.channels, true);
  v.setUint32(24, a.sampleRate, true);
  v.setUint32(28, a.sampleRate * blockAlign, true);
  v.setUint16(32, blockAlign, true);
  v.setUint16(34, bits, true);
  if (fmtBytes > 16) v.setUint16(36, fmtBytes - 18, true); // cbSize
  if (extensible) {
    v.setUint16(38, bits, true); // valid bits
    v.setUint32(40, 0, true); // channel mask: none claimed
    v.setUint16(44, FORMAT_PCM, true);
    GUID_TAIL.forEach((b, i) => v.setUint8(46 + i, b));
  }
  let pos = 20 + fmtBytes;
  if (float) {
    tag(pos, 'fact');
    v.setUint32(pos + 4, 4, true);
    v.setUint32(pos + 8, a.frames, true);
    pos += 12;
  }
  tag(pos, 'data');
  v.setUint32(pos + 4, dataBytes, true);
  pos += 8;
  const write = sampleWriter(bits, float, v);
  const width = bits / 8;
  for (let c = 0; c < a.channels; c++) {
    const src = a.data.subarray(c * a.frames, (c + 1) * a.frames);
    for (let i = 0, p = pos + c * width; i < a.frames; i++, p += blockAlign) write(p, src[i]);
  }
  return out;
}

/** Writes encodeWav's bytes to a temporary name and renames it, so a crash leaves no half file. */
export function writeWavFile(path: string, a: DecodedAudio, opts: WavWriteOptions = {}): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, encodeWav(a, opts));
  renameSync(tmp, path);
}
