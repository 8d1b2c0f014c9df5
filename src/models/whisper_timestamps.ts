// Whisper's timestamp tokens <|0.00|> <|0.02|> ... <|30.00|> (ids from no_timestamps_token_id + 1,
// one per 0.02 s) and the rules transformers' WhisperTimeStampLogitsProcessor (4.44, after
// openai-whisper's ApplyTimestampRules) applies to each step's logits when timestamps are asked
// for, in its order: <|notimestamps|> is never generated; timestamps come in pairs (after one
// timestamp that follows text, only a timestamp or <|endoftext|> and up; after two, only text);
// they never decrease (and a new segment does not start at the previous end again); the first
// generated token is a timestamp no later than max_initial_timestamp_index; and when the
// timestamps together are likelier than the best text token, only a timestamp may follow.

export interface TimestampRules {
  /** the first timestamp id, <|0.00|> (no_timestamps_token_id + 1) */
  timestampBegin: number;
  noTimestampsTokenId: number;
  eosTokenId: number;
  /** the latest allowed first timestamp, as an index from <|0.00|> (null: any) */
  maxInitialTimestampIndex: number | null;
}

/** Seconds per timestamp token (transformers' time_precision). */
export const TIME_PRECISION = 0.02;

/**
 * Applies the timestamp rules in place to one step's logits [V] (already through the suppression
 * processors), given the ids generated so far after the prompt.
 * @example applyTimestampRules(logits, generated, { timestampBegin: 50365, noTimestampsTokenId: 50364, eosTokenId: 50257, maxInitialTimestampIndex: 50 })
 */
export function applyTimestampRules(logits: Float32Array, generated: readonly number[], r: TimestampRules): Float32Array {
  const V = logits.length;
  const begin = r.timestampBegin;
  const forbid = (from: number, to: number): void => {
    logits.fill(-Infinity, Math.max(0, from), Math.min(V, to));
  };
  logits[r.noTimestampsTokenId] = -Infinity;
  const n = generated.length;
  const isTs = (id: number): boolean => id >= begin;
  const lastWasTs = n >= 1 && isTs(generated[n - 1]);
  const penultimateWasTs = n < 2 || isTs(generated[n - 2]);
  if (lastWasTs) {
    if (penultimateWasTs) forbid(begin, V); // a pair is closed: text next
    else forbid(0, r.eosTokenId); // a segment's end: its pair or <|endoftext|> next
  }
  const timestamps = generated.filter(isTs);
  if (timestamps.length) {
    const last = timestamps[timestamps.length - 1];
    // the closing timestamp may equal the opening one; a new segment starts strictly after it
    forbid(begin, lastWasTs && !penultimateWasTs ? last : last + 1);
  }
  if (n === 0) {
    forbid(0, begin);
    if (r.maxInitialTimestampIndex !== null) forbid(begin + r.maxInitialTimestampIndex + 1, V);
  }
  if (timestampsLikelier(logits, begin)) forbid(0, begin);
  return logits;
}

/** log Σ softmax over the timestamps > the largest text log-probability (the shared logsumexp cancels). */
function timestampsLikelier(logits: Float32Array, begin: number): boolean {
  let maxTs = -Infinity;
  for (let i = begin; i < logits.length; i++) maxTs = Math.max(maxTs, logits[i]);
  if (maxTs === -Infinity) return false;
  let sum = 0;
  for (let i = begin; i < logits.length; i++) sum += Math.exp(logits[i] - maxTs);
  let maxText = -Infinity;
  for (let i = 0; i < begin; i++) maxText = Math.max(maxText, logits[i]);
  return maxTs + Math.log(sum) > maxText;
}

export interface TimedSegment {
  /** seconds from the start of the audio */
  start: number;
  end: number;
  /** the text ids between the two timestamps */
  tokens: number[];
}

/**
 * Segments of generated ids: <|a|> text <|b|> pairs, times offset by `offsetSeconds` (a window's
 * start). Text after an unclosed timestamp ends at the last one seen.
 * @example timestampSegments([50365, 100, 101, 50400], 50365)  // [{ start: 0, end: 0.7, tokens: [100, 101] }]
 */
export function timestampSegments(ids: readonly number[], timestampBegin: number, offsetSeconds = 0): TimedSegment[] {
  const time = (id: number): number => Math.round((offsetSeconds + (id - timestampBegin) * TIME_PRECISION) * 100) / 100;
  const out: TimedSegment[] = [];
  let start: number | null = null;
  let text: number[] = [];
  for (const id of ids) {
    if (id < timestampBegin) {
      text.push(id);
      continue;
    }
    if (start === null) start = time(id);
    else {
      out.push({ start, end: time(id), tokens: text });
      [start, text] = [null, []];
    }
  }
  if (start !== null && text.length) out.push({ start, end: start, tokens: text });
  return out;
}
