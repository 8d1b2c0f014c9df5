// Child process of lazy_load.test.ts: loads one checkpoint (LAZY_DIR, LAZY_DTYPE) in a fresh
// process and prints its RSS before the load, its peak RSS during the load (VmHWM, reset first
// through /proc/self/clear_refs so module loading does not count) and the storage bytes resident.
import { readFileSync, writeFileSync } from 'node:fs';
import * as k from '../../src/index.js';

const status = (field: string): number => Number(new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;

k.zeros([1]).dispose(); // the addon is loaded before the baseline
writeFileSync('/proc/self/clear_refs', '5'); // VmHWM := VmRSS (Linux 4.0+)
const before = status('VmRSS');
const { model } = await k.loadPretrained(process.env.LAZY_DIR!, { dtype: process.env.LAZY_DTYPE as k.DType | 'auto' });
const out = { before, hwm: status('VmHWM'), resident: k.memory.stats().current.total };
model.dispose();
process.stdout.write(JSON.stringify(out) + '\n');
