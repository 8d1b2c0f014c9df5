// Model arena: one prompt to 2-4 loaded models at once, each streaming into its own column with
// its time to first token, decode tokens/s and total time; a vote per prompt is kept in
// localStorage and the table below lists every past round.
import { useEffect, useState } from 'preact/hooks';
import { PICK_ARENA, type SamplingParams, streamChat, takePick } from '../api.ts';
import { DEFAULT_PARAMS } from '../conversations.ts';
import { renderMarkdown } from '../markdown.ts';

interface Run {
  model: string;
  text: string;
  /** ms from sending to the first text; total ms; completion tokens */
  ttftMs: number | null;
  totalMs: number | null;
  tokens: number | null;
  error: string | null;
}

interface Round {
  prompt: string;
  runs: Omit<Run, 'text' | 'error'>[];
  winner: string | null;
  at: number;
}

const KEY = 'kestrel-studio-arena';
const loadRounds = (): Round[] => JSON.parse(localStorage.getItem(KEY) ?? '[]') as Round[];

/** Decode speed: tokens after the first over the time after the first. */
export const tokensPerSecond = (r: Pick<Run, 'ttftMs' | 'totalMs' | 'tokens'>): number | null =>
  r.ttftMs !== null && r.totalMs !== null && r.tokens !== null && r.tokens > 1 && r.totalMs > r.ttftMs ? ((r.tokens - 1) * 1000) / (r.totalMs - r.ttftMs) : null;

const ms = (v: number | null): string => (v === null ? '–' : `${Math.round(v)} ms`);

export function ArenaPage(props: { models: string[] }) {
  // the training page's "Compare with base" sends the base and the fine-tune
  const [picked, setPicked] = useState<string[]>(() => takePick<string[]>(PICK_ARENA) ?? props.models.slice(0, 2));
  const [prompt, setPrompt] = useState('');
  const [runs, setRuns] = useState<Run[]>([]);
  const [rounds, setRounds] = useState<Round[]>(loadRounds);
  const [voted, setVoted] = useState(true);
  const [maxTokens, setMaxTokens] = useState(64);
  // the listing may arrive after this page opened: start with the first two loaded models
  useEffect(() => setPicked((p) => (p.length ? p : props.models.slice(0, 2))), [props.models.join()]);
  const params: SamplingParams = { ...DEFAULT_PARAMS, temperature: 0, max_tokens: maxTokens };

  const toggle = (m: string) => setPicked((p) => (p.includes(m) ? p.filter((x) => x !== m) : p.length < 4 ? [...p, m] : p));
  const patch = (i: number, p: Partial<Run>) => setRuns((rs) => rs.map((r, j) => (j === i ? { ...r, ...p } : r)));

  const go = async () => {
    const t0 = performance.now();
    setRuns(picked.map((model) => ({ model, text: '', ttftMs: null, totalMs: null, tokens: null, error: null })));
    setVoted(false);
    const done = await Promise.all(picked.map(async (model, i) => {
      const run: Run = { model, text: '', ttftMs: null, totalMs: null, tokens: null, error: null };
      try {
        await streamChat(model, [{ role: 'user', content: prompt }], params, {
          onText: (t) => {
            run.ttftMs ??= performance.now() - t0;
            run.text += t;
            patch(i, { text: run.text, ttftMs: run.ttftMs });
          },
          onUsage: (u) => (run.tokens = u.completion_tokens),
        }, new AbortController().signal);
      } catch (e) {
        run.error = (e as Error).message;
      }
      run.totalMs = performance.now() - t0;
      patch(i, run);
      return run;
    }));
    setRuns(done);
  };

  const vote = (winner: string | null) => {
    const round: Round = { prompt, runs: runs.map(({ model, ttftMs, totalMs, tokens }) => ({ model, ttftMs, totalMs, tokens })), winner, at: Date.now() };
    const next = [round, ...rounds];
    localStorage.setItem(KEY, JSON.stringify(next));
    setRounds(next);
    setVoted(true);
  };

  const running = runs.some((r) => r.totalMs === null);
  return (
    <section class="arena">
      <h2>Arena</h2>
      <div class="pick">{props.models.map((m) => <label key={m}><input type="checkbox" name={`pick-${m}`} checked={picked.includes(m)} onChange={() => toggle(m)} /> {m}</label>)}</div>
      <textarea name="arena-prompt" placeholder="Prompt for every model" value={prompt} onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)} />
      <label>max_tokens <input type="number" name="arena-max-tokens" min={1} value={maxTokens} onChange={(e) => setMaxTokens(Number((e.target as HTMLInputElement).value))} /></label>
      <p class="note">The models stream at once: the server batches their requests (continuous batching, one forward per model in turn), so their timings overlap.</p>
      <button onClick={go} disabled={running || picked.length < 2 || !prompt.trim()}>Run {picked.length} models</button>
      <div class="columns">
        {runs.map((r) => (
          <div class="run" key={r.model} data-model={r.model}>
            <h3>{r.model}</h3>
            <p class="timing">TTFT {ms(r.ttftMs)} · {tokensPerSecond(r)?.toFixed(1) ?? '–'} tok/s · total {ms(r.totalMs)}</p>
            {r.error ? <p class="error">{r.error}</p> : <div dangerouslySetInnerHTML={{ __html: renderMarkdown(r.text) }} />}
            {!running && !voted && <button onClick={() => vote(r.model)}>{r.model} is better</button>}
          </div>
        ))}
      </div>
      {!running && !voted && runs.length > 0 && <button onClick={() => vote(null)}>Tie</button>}
      {rounds.length > 0 && (
        <table class="rounds">
          <thead><tr><th>prompt</th><th>models (TTFT / tok/s / total)</th><th>winner</th></tr></thead>
          <tbody>{rounds.map((r) => (
            <tr key={r.at}><td>{r.prompt}</td><td>{r.runs.map((x) => `${x.model}: ${ms(x.ttftMs)} / ${tokensPerSecond(x)?.toFixed(1) ?? '–'} / ${ms(x.totalMs)}`).join('; ')}</td><td>{r.winner ?? 'tie'}</td></tr>
          ))}</tbody>
        </table>
      )}
    </section>
  );
}
