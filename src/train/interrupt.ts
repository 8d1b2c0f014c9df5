// Ctrl-C for long work: the first SIGINT (or SIGTERM, what schedulers send before a kill) asks
// the work to stop at the next safe point (the trainer finishes its step and saves a
// checkpoint); a second one exits at once, as the user clearly means it. The listener only
// runs when the work yields to the event loop, so a loop that installs it must await between
// steps (see Trainer.train).

/** Thrown by a command whose work was stopped by a signal; the CLI exits with 130 (128 + SIGINT). */
export class Interrupted extends Error {
  override name = 'Interrupted';
}

const EXIT_CODE: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Calls `stop` on the first SIGINT/SIGTERM and exits the process on the second; returns the
 * function that removes the listeners (call it when the work is done).
 * @example const release = onInterrupt(() => trainer.stop(), 'finishing the step'); try { ... } finally { release(); }
 */
export function onInterrupt(stop: (signal: 'SIGINT' | 'SIGTERM') => void, doing: string): () => void {
  let seen = 0;
  const handler = (signal: 'SIGINT' | 'SIGTERM'): void => {
    if (seen++ > 0) {
      process.stderr.write(`\n${signal} again: exiting now\n`);
      process.exit(EXIT_CODE[signal]);
    }
    process.stderr.write(`\n${signal}: ${doing} (press Ctrl-C again to exit now)\n`);
    stop(signal);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.removeListener('SIGINT', handler);
    process.removeListener('SIGTERM', handler);
  };
}

/** Lets pending signals and timers run: one macrotask turn (setImmediate, not a microtask). */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
