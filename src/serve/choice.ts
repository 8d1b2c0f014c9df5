// One choice of a completion as it grows: its token ids, its text (cut before the first stop
// string, which OpenAI leaves out), the part safe to stream (text that could still become a stop
// string, or an unfinished UTF-8 sequence, is held back), its logprobs and its finish reason.
import type { TokenLogprob } from './engine.js';

export type FinishReason = 'stop' | 'length';

export interface LoggedToken extends TokenLogprob {
  id: number;
}

export class Choice {
  readonly ids: number[] = [];
  readonly logprobs: LoggedToken[] = [];
  text = '';
  finishReason: FinishReason | null = null;
  /** characters of text already streamed */
  private sent = 0;
  /** logprob entries already streamed */
  private sentLogprobs = 0;

  constructor(readonly index: number, private readonly decode: (ids: number[]) => string, private readonly stop: readonly string[],
    private readonly maxTokens: number, private readonly eos: readonly number[]) {}

  /** Adds the step's token (ignored once finished). */
  push(token: number, logprob: TokenLogprob | null): void {
    if (this.finishReason) return;
    if (this.eos.includes(token)) {
      this.finishReason = 'stop';
      return;
    }
    this.ids.push(token);
    if (logprob) this.logprobs.push({ id: token, ...logprob });
    const text = this.decode(this.ids);
    const cut = Math.min(...this.stop.map((s) => text.indexOf(s)).filter((i) => i >= 0));
    if (Number.isFinite(cut)) {
      this.text = text.slice(0, cut);
      this.finishReason = 'stop';
      return;
    }
    this.text = text;
    if (this.ids.length >= this.maxTokens) this.finishReason = 'length';
  }

  /** Ends a choice the generator ended (its eos or stop string was seen there first). */
  end(reason: FinishReason): void {
    this.finishReason ??= reason;
  }

  /** How many trailing characters may still turn into a stop string or complete a character. */
  private heldBack(): number {
    if (this.finishReason) return 0;
    const t = this.text;
    let hold = 0;
    for (const s of this.stop) for (let k = Math.min(s.length - 1, t.length); k > hold; k--) if (s.startsWith(t.slice(t.length - k))) hold = k;
    if (t.endsWith('\uFFFD')) hold = Math.max(hold, 1);
    return hold;
  }

  /** The text and logprobs not yet streamed that are safe to send now. */
  takeDelta(): { text: string; logprobs: LoggedToken[] } {
    const visible = this.text.length - this.heldBack();
    const text = visible > this.sent ? this.text.slice(this.sent, visible) : '';
    this.sent = Math.max(this.sent, visible);
    const logprobs = this.logprobs.slice(this.sentLogprobs);
    this.sentLogprobs = this.logprobs.length;
    return { text, logprobs };
  }
}
