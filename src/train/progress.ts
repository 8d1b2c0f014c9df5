// The progress bar every long-running command draws on stderr (training steps, embedding batches).

/**
 * "[#####...] done/total" for a carriage-return progress line.
 * @example process.stderr.write(`\r${progressBar(3, 10)} loss 1.2`)
 */
export function progressBar(done: number, total: number, width = 24): string {
  const filled = Math.max(0, Math.min(width, Math.round((width * done) / Math.max(total, 1))));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
}
