// Out-of-range indices found on the device. The indexing kernels (native/cuda/kernels/indexing.cu)
// never follow a bad index; the first one is recorded in a small device buffer that is read back
// after every host read and k.cuda.synchronize() (both wait for the queue anyway), so an
// embedding lookup or its gradient costs no extra round trip per step. The Error names the op,
// the position, the value and the dim size, as the CPU's does; KESTREL_CUDA_SYNC=1 checks right
// after each launch instead.
import { cudaContext } from './context.js';

// the paged cache's codes (native/cuda/kernels/paged.cu) follow the indexing and loss kernels'
const OPS = ['gather', 'scatter_add', 'index_select', 'index_add', 'cross_entropy', 'cross_entropy_backward',
  'paged_write', 'paged_attention_sequence', 'paged_attention_position', 'paged_attention_block'] as const;
export type IndexOp = (typeof OPS)[number];
export const indexOpCode = (op: IndexOp): number => OPS.indexOf(op);

// Record layout (int64 each): flag, op, position, value, size, launch id.
const RECORD_WORDS = 6;
// The index shapes of the latest launches, for the message (a launch id older than this many
// launches, e.g. one replayed from a CUDA graph, is reported without its index's shape).
const RING = 1024;

let record = 0;
let armed = false;
let nextId = 1;
const ringIds = new Float64Array(RING);
const ringShapes: string[] = new Array<string>(RING).fill('');

/** The device record the next indexing launch reports to, and that launch's id. */
export function indexErrorSlot(indexShape: readonly number[]): { ptr: number; id: number } {
  if (record === 0) record = cudaContext().addon.cudaAlloc(RECORD_WORDS * 8, true);
  armed = true;
  const id = nextId++;
  ringIds[id % RING] = id;
  ringShapes[id % RING] = `[${indexShape.join(',')}]`;
  return { ptr: record, id };
}

/** Throws (and clears the record) when a kernel queued before now met an out-of-range index. */
export function raiseIndexErrors(): void {
  if (!armed) return;
  const { addon } = cudaContext();
  const r = new BigInt64Array(RECORD_WORDS);
  addon.cudaRead(record, 0, r);
  if (r[0] === 0n) return;
  addon.cudaWrite(record, 0, new BigInt64Array(RECORD_WORDS));
  const [op, pos, value, size, id] = [r[1], r[2], r[3], r[4], r[5]].map(Number);
  const shape = ringIds[id % RING] === id ? ` of index ${ringShapes[id % RING]}` : '';
  const where = '(found on the cuda device by a kernel queued before this point; KESTREL_CUDA_SYNC=1 reports it at the launch)';
  if (OPS[op]?.startsWith('cross_entropy')) throw new Error(`${OPS[op]}: target ${value} at row ${pos} is out of range for ${size} classes ${where}`);
  // the paged kernels' messages as native/paged_attention.cc words them
  if (OPS[op] === 'paged_write') throw new Error(`paged_write: slot ${value} of row ${pos} outside the pool's ${size} slots ${where}`);
  if (OPS[op] === 'paged_attention_sequence') throw new Error(`paged_attention: query ${pos}: sequence ${value} outside the table's ${size} rows ${where}`);
  if (OPS[op] === 'paged_attention_position') throw new Error(`paged_attention: query ${pos}: position ${value} outside the table's ${size} tokens ${where}`);
  if (OPS[op] === 'paged_attention_block') throw new Error(`paged_attention: sequence ${pos}: block ${value} outside the pool's ${size} blocks ${where}`);
  throw new Error(`${OPS[op] ?? 'indexing'}: index ${value} at position ${pos}${shape} is out of range for a dimension of size ${size} ${where}`);
}

/** After an indexing launch: in synchronous mode, report a bad index right away. */
export function afterIndexLaunch(): void {
  if (process.env.KESTREL_CUDA_SYNC === '1') raiseIndexErrors();
}
