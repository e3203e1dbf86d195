// The clients: PHP workers on each web node, talking to that node's sidecar.
// Each worker uses one extension and sends one request after another:
//
//   php-memcached session   add <sid>.lock (a unique value); NOT_STORED: wait
//                           150 ms and try again, at most 5 times; then get
//                           <sid>, work, set <sid> (or delete it: a logout),
//                           delete <sid>.lock
//   pecl-memcache session   incr <sid>.lock, add <sid>.lock "1", get <sid> in one
//                           write; locked when the incr answers 1 or the add
//                           STORED; else wait (5 ms, doubling to 1 s) and again,
//                           up to its lock timeout; then as above. Its binary
//                           protocol's incr creates the key (answering 1).
//   plain                   set, get or delete of a plain key, unique values
//
// Like the extensions, a request that gets "unavailable" (the proxy closed the
// connection) gives up: on the lock, at once; later, after trying to release
// the lock. Sessions are shared by every node, so requests for one session
// meet through different sidecars.

import type { ArithOutcome, DeleteOutcome, GetOutcome, Router, StoreOutcome } from '../../src/protocol/types';
import type { Checker, OpKind, Outcome } from './checker';
import type { Scheduler } from './clock';
import type { ClientConnection, Host, Unavailable } from './host';
import type { Rng } from './random';

/** php-memcached's lock expiry is max_execution_time (30 s); shorter here so lost locks free up sooner. */
const LOCK_TTL_S = 10;
const SESSION_TTL_S = 1440;
const PHP_MEMCACHED_LOCK_WAIT_MS = 150;
const PHP_MEMCACHED_LOCK_RETRIES = 5;
const PECL_FIRST_WAIT_MS = 5;
const PECL_LONGEST_WAIT_MS = 1000;
const PECL_LOCK_TIMEOUT_MS = LOCK_TTL_S * 1000;

type Extension = 'php-memcached' | 'pecl-memcache' | 'pecl-memcache-binary';

export interface WorkloadOptions {
  clientsPerHost: number;
  /** Session ids shared by all nodes. */
  sessions: number;
  plainKeys: number;
}

/** One client's requests, each recorded with the checker. */
class Client {
  constructor(
    private readonly conn: ClientConnection,
    private readonly checker: Checker,
    private readonly who: string,
    private readonly scheduler: Scheduler,
    /** A value never written before. */
    readonly unique: () => string,
  ) {}

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.scheduler.after(ms, resolve));
  }

  get(key: string): Promise<GetOutcome> {
    return this.record('get', key, undefined, 0, (r) => r.get(Buffer.from(key)));
  }

  set(key: string, value: string, exptime: number): Promise<StoreOutcome> {
    return this.record('set', key, value, exptime, (r) => r.store(store('set', key, value, exptime)));
  }

  add(key: string, value: string, exptime: number): Promise<StoreOutcome> {
    return this.record('add', key, value, exptime, (r) => r.store(store('add', key, value, exptime)));
  }

  delete(key: string): Promise<DeleteOutcome> {
    return this.record('delete', key, undefined, 0, (r) => r.delete(Buffer.from(key), 0n));
  }

  /** incr by 1; `createExptime`: create the key at 1 when missing (the binary protocol). */
  incr(key: string, createExptime?: number): Promise<ArithOutcome> {
    const create = createExptime === undefined ? undefined : { initial: 1n, exptime: createExptime };
    return this.record('incr', key, undefined, createExptime ?? 0, (r) => r.arith({ kind: 'incr', key: Buffer.from(key), delta: 1n, create }));
  }

  private async record<T extends Outcome>(
    kind: OpKind,
    key: string,
    value: string | undefined,
    exptime: number,
    send: (router: Router) => Promise<T>,
  ): Promise<T | Unavailable> {
    const op = this.checker.invoke(this.who, kind, key, value, exptime * 1000);
    const outcome = await this.conn.call(send);
    this.checker.complete(op, outcome);
    return outcome;
  }
}

function store(mode: 'set' | 'add', key: string, value: string, exptime: number) {
  return { mode, key: Buffer.from(key), value: Buffer.from(value), flags: 0, exptime, cas: 0n };
}

export class Workload {
  /** Requests in progress. */
  busy = 0;
  private paused = false;
  private values = 0;
  private waiting: Array<() => void> = [];

  constructor(
    private readonly scheduler: Scheduler,
    private readonly rng: Rng,
    private readonly checker: Checker,
    private readonly hosts: readonly Host[],
    private readonly options: WorkloadOptions,
  ) {}

  start(): void {
    for (const host of this.hosts) for (let n = 0; n < this.options.clientsPerHost; n++) void this.worker(host, n);
  }

  /** Workers finish the request in hand and start no other until resume(). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    for (const wake of this.waiting.splice(0)) wake();
  }

  private async worker(host: Host, n: number): Promise<void> {
    const rng = this.rng.stream(`worker ${host.index}.${n}`);
    const extension = rng.pick<Extension>(['php-memcached', 'pecl-memcache', 'pecl-memcache-binary']);
    let conn: ClientConnection | null = null;
    for (;;) {
      await new Promise<void>((resolve) => this.scheduler.after(rng.between(0, 200), resolve));
      if (this.paused) {
        await new Promise<void>((resolve) => this.waiting.push(resolve));
        continue;
      }
      if (conn === null || !conn.alive) conn = host.connect();
      if (conn === null) continue; // no sidecar on the node now
      const who = `${conn.sidecarId}/c${n}`;
      const client = new Client(conn, this.checker, who, this.scheduler, () => `${who}#${this.values++}`);
      this.busy++;
      try {
        await this.request(client, rng, extension);
      } finally {
        this.busy--;
      }
    }
  }

  private request(client: Client, rng: Rng, extension: Extension): Promise<void> {
    const roll = rng.next();
    if (roll < 0.2) return this.plain(client, rng);
    const sid = `sess:${rng.int(0, this.options.sessions - 1)}`;
    const work = { logout: roll > 0.9, ms: rng.between(0, 50) };
    return extension === 'php-memcached' ? this.phpMemcached(client, sid, work) : this.pecl(client, sid, work, extension === 'pecl-memcache-binary');
  }

  private async plain(client: Client, rng: Rng): Promise<void> {
    const key = `key:${rng.int(0, this.options.plainKeys - 1)}`;
    const what = rng.next();
    if (what < 0.4) await client.set(key, client.unique(), 0);
    else if (what < 0.85) await client.get(key);
    else await client.delete(key);
  }

  private async phpMemcached(client: Client, sid: string, work: { logout: boolean; ms: number }): Promise<void> {
    const lock = `${sid}.lock`;
    for (let attempt = 0; ; attempt++) {
      const r = await client.add(lock, client.unique(), LOCK_TTL_S);
      if (r.status === 'stored') break;
      // "Failed to write session lock", or "Failed to create session lock" once out of retries.
      if (r.status !== 'not_stored' || attempt === PHP_MEMCACHED_LOCK_RETRIES) return;
      await client.sleep(PHP_MEMCACHED_LOCK_WAIT_MS);
    }
    await this.underLock(client, sid, work, (await client.get(sid)).status !== 'unavailable');
  }

  private async pecl(client: Client, sid: string, work: { logout: boolean; ms: number }, binary: boolean): Promise<void> {
    const lock = `${sid}.lock`;
    let wait = PECL_FIRST_WAIT_MS;
    for (let waited = 0; ; waited += wait, wait = Math.min(wait * 2, PECL_LONGEST_WAIT_MS)) {
      const [incr, add, read] = await Promise.all([
        client.incr(lock, binary ? LOCK_TTL_S : undefined),
        client.add(lock, '1', LOCK_TTL_S),
        client.get(sid),
      ]);
      if ((incr.status === 'ok' && incr.value === 1n) || add.status === 'stored') {
        return this.underLock(client, sid, work, read.status !== 'unavailable');
      }
      if (add.status === 'unavailable' || waited >= PECL_LOCK_TIMEOUT_MS) return;
      await client.sleep(wait);
    }
  }

  /** The session is locked (and was read: `readOk`); write it or destroy it, then release the lock. */
  private async underLock(client: Client, sid: string, work: { logout: boolean; ms: number }, readOk: boolean): Promise<void> {
    if (readOk) {
      await client.sleep(work.ms);
      if (work.logout) await client.delete(sid);
      else await client.set(sid, client.unique(), SESSION_TTL_S);
    }
    await client.delete(`${sid}.lock`);
  }
}
