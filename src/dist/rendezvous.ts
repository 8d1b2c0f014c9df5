// Start-up over TCP (like torchrun's c10d store, much smaller): rank 0 listens on
// MASTER_ADDR:MASTER_PORT, every other rank connects and says who it is; rank 0 names the
// shared-memory segment, all map it, and once all have, rank 0 removes its name from /dev/shm
// (the mappings stay valid) so that a crash later leaves nothing behind. A rank that never
// arrives is an error naming it after the timeout; rank 0 passes its error on to the others.
import { type Server, type Socket, createConnection, createServer } from 'node:net';

export interface RendezvousOpts {
  rank: number;
  worldSize: number;
  addr: string;
  port: number;
  timeoutMs: number;
  /** the segment name rank 0 hands out */
  segment: string;
  /** maps the segment (every rank, rank 0 first) */
  open: (segment: string) => void;
  /** removes the segment's name (rank 0, once every rank has mapped it) */
  unlink: (segment: string) => void;
}

const LEADER_GRACE_MS = 5000;

type Message = { rank?: number; world?: number; segment?: string; opened?: boolean; go?: boolean; error?: string };

/** Reads newline-delimited JSON messages from a socket, one at a time, each within the deadline. */
class Lines {
  private buf = '';
  private queue: Message[] = [];
  private waiter: ((m: Message | Error) => void) | null = null;
  private ended: Error | null = null;

  constructor(readonly socket: Socket, /** who is at the other end, for messages */ public peer: string) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buf += chunk;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        let m: Message;
        try {
          m = JSON.parse(line) as Message;
        } catch {
          m = { error: `${this.peer} sent a line that is not JSON: ${line.slice(0, 80)}` };
        }
        this.push(m);
      }
    });
    const end = (why: string) => () => {
      this.ended ??= new Error(`rendezvous: ${this.peer} ${why}`);
      this.waiter?.(this.ended);
      this.waiter = null;
    };
    socket.on('error', (e) => end(`connection failed: ${e.message}`)());
    socket.on('close', end('closed the connection (did it exit?)'));
  }

  private push(m: Message): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(m);
    } else this.queue.push(m);
  }

  next(deadline: number, waitingFor: string): Promise<Message> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`rendezvous: ${this.peer} did not send ${waitingFor} in time`));
      }, Math.max(0, deadline - Date.now()));
      this.waiter = (m) => {
        clearTimeout(timer);
        if (m instanceof Error) reject(m);
        else if (m.error) reject(new Error(m.error));
        else resolve(m);
      };
    });
  }

  send(m: Message): void {
    if (!this.socket.destroyed) this.socket.write(JSON.stringify(m) + '\n');
  }
}

/** Runs the start-up handshake; resolves once every rank has mapped the segment. */
export async function rendezvous(o: RendezvousOpts): Promise<void> {
  if (o.worldSize === 1) {
    o.open(o.segment);
    o.unlink(o.segment);
    return;
  }
  const deadline = Date.now() + o.timeoutMs;
  if (o.rank === 0) await leader(o, deadline);
  else await follower(o, deadline);
}

async function leader(o: RendezvousOpts, deadline: number): Promise<void> {
  const peers = new Map<number, Lines>();
  const server: Server = createServer();
  const where = `${o.addr}:${o.port}`;
  let opened = false;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new Error(`rendezvous: rank 0 cannot listen on ${where}: ${e.message}`)));
      server.listen(o.port, o.addr, () => resolve());
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const missing = Array.from({ length: o.worldSize - 1 }, (_, i) => i + 1).filter((r) => !peers.has(r));
        reject(new Error(`rendezvous: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not arrive at ${where} within ${o.timeoutMs} ms`));
      }, Math.max(0, deadline - Date.now()));
      const fail = (e: Error) => (clearTimeout(timer), reject(e));
      server.on('connection', (socket) => {
        const lines = new Lines(socket, `a rank connecting to ${where}`);
        lines.next(deadline, 'its rank').then((hello) => {
          const r = hello.rank ?? -1;
          if (hello.world !== o.worldSize) return fail(new Error(`rendezvous: rank ${r} says the world has ${hello.world} ranks, rank 0 says ${o.worldSize}`));
          if (!Number.isInteger(r) || r < 1 || r >= o.worldSize) return fail(new Error(`rendezvous: a peer announced rank ${r}, outside 1..${o.worldSize - 1}`));
          if (peers.has(r)) return fail(new Error(`rendezvous: two processes announced rank ${r}`));
          lines.peer = `rank ${r}`;
          peers.set(r, lines);
          if (peers.size === o.worldSize - 1) (clearTimeout(timer), resolve());
        }, fail);
      });
    });
    o.open(o.segment);
    opened = true;
    for (const p of peers.values()) p.send({ segment: o.segment });
    await Promise.all([...peers.values()].map((p) => p.next(deadline, 'that it mapped the segment')));
    o.unlink(o.segment);
    opened = false;
    for (const p of peers.values()) p.send({ go: true });
  } catch (e) {
    if (opened) o.unlink(o.segment); // a failed start leaves nothing in /dev/shm
    for (const p of peers.values()) p.send({ error: (e as Error).message });
    throw e;
  } finally {
    for (const p of peers.values()) p.socket.end();
    server.close();
  }
}

async function follower(o: RendezvousOpts, deadline: number): Promise<void> {
  const where = `${o.addr}:${o.port}`;
  let socket: Socket | null = null;
  // rank 0 may not listen yet: retry refused connections until the deadline
  while (!socket) {
    socket = await new Promise<Socket | null>((resolve, reject) => {
      const s = createConnection({ host: o.addr, port: o.port });
      s.once('connect', () => resolve(s));
      s.once('error', (e: NodeJS.ErrnoException) => {
        s.destroy();
        if ((e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET') && Date.now() < deadline) setTimeout(() => resolve(null), 50);
        else reject(new Error(`rendezvous: rank ${o.rank} cannot reach rank 0 at ${where} within ${o.timeoutMs} ms: ${e.message}`));
      });
    });
  }
  const lines = new Lines(socket, `rank 0 (${where})`);
  // rank 0 judges the timeout and says which rank is missing: give its message time to arrive
  const late = deadline + LEADER_GRACE_MS;
  try {
    lines.send({ rank: o.rank, world: o.worldSize });
    const { segment } = await lines.next(late, 'the segment name');
    if (typeof segment !== 'string') throw new Error(`rendezvous: rank 0 sent no segment name`);
    o.open(segment);
    lines.send({ opened: true });
    await lines.next(late, 'the go-ahead');
  } finally {
    socket.end();
  }
}
