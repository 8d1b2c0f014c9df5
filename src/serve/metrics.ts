// Prometheus text exposition (format 0.0.4) of the server's state: queue length, running jobs and
// (continuous batching) the paged KV blocks in use and in all pools from the engine, counters of
// requests and generated tokens, tokens/s over the last window, and the storage counters by tag
// (k.memory): between generation steps the live activation bytes are the KV caches (the serial
// engine's per-job caches, or the batching engine's preallocated pools), measured rather than estimated.
import { MEMORY_TAGS, type MemoryCounts } from '../tensor/memory.js';
import type { EngineStats } from './engine.js';

const WINDOW_MS = 10_000;

export class ServerMetrics {
  generatedTokens = 0;
  promptTokens = 0;
  private readonly requests = new Map<string, number>();
  /** [time, tokens] of recent steps, for the windowed rate */
  private readonly recent: [number, number][] = [];

  constructor(private readonly now: () => number = () => performance.now()) {}

  countRequest(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  countTokens(n: number): void {
    this.generatedTokens += n;
    this.recent.push([this.now(), n]);
  }

  /** Generated tokens per second over the last 10 s. */
  tokensPerSecond(): number {
    const cutoff = this.now() - WINDOW_MS;
    while (this.recent.length && this.recent[0][0] < cutoff) this.recent.shift();
    return this.recent.reduce((s, [, n]) => s + n, 0) / (WINDOW_MS / 1000);
  }

  render(engine: EngineStats, memory: MemoryCounts): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples.map(([labels, v]) => `${name}${labels ? `{${labels}}` : ''} ${v}`));
    };
    metric('kestrel_queue_length', 'gauge', 'Requests waiting for the engine.', [['', engine.queued]]);
    metric('kestrel_running_requests', 'gauge', 'Requests generating now.', [['', engine.running]]);
    if (engine.kvBlocksTotal !== undefined) {
      metric('kestrel_kv_blocks_used', 'gauge', 'Paged KV cache blocks held by running sequences.', [['', engine.kvBlocksUsed ?? 0]]);
      metric('kestrel_kv_blocks_total', 'gauge', 'Paged KV cache blocks in all pools (--kv-cache-mb).', [['', engine.kvBlocksTotal]]);
    }
    metric('kestrel_prompt_tokens_total', 'counter', 'Prompt tokens of the requests that ran.', [['', this.promptTokens]]);
    metric('kestrel_generated_tokens_total', 'counter', 'Tokens generated, all choices.', [['', this.generatedTokens]]);
    metric('kestrel_generation_tokens_per_second', 'gauge', 'Tokens generated per second over the last 10 s.', [['', this.tokensPerSecond()]]);
    metric('kestrel_memory_bytes', 'gauge', 'Live tensor storage by tag (activation between steps = the KV caches: per job, or the paged pools).',
      MEMORY_TAGS.map((tag) => [`tag="${tag}"`, memory[tag]]));
    metric('kestrel_http_requests_total', 'counter', 'HTTP requests by endpoint and status.', [...this.requests]);
    return lines.join('\n') + '\n';
  }
}
