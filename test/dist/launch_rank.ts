// A rank for the launcher tests: records its pid in PID_DIR/<rank>, then idles until stopped;
// with MODE=fail, rank 1 throws once every rank has recorded its pid.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.PID_DIR ?? '.';
const rank = Number(process.env.RANK);
const world = Number(process.env.WORLD_SIZE);
writeFileSync(join(dir, `${rank}.tmp`), String(process.pid));
writeFileSync(join(dir, String(rank)), String(process.pid));
setInterval(() => {
  const all = readdirSync(dir).filter((f) => /^\d+$/.test(f)).length === world;
  if (all && process.env.MODE === 'fail' && rank === 1) throw new Error(`boom in rank ${rank}`);
  if (!existsSync(dir)) process.exit(3);
}, 50);
