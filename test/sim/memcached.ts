// A simulated memcached: the semantics the router relies on, nothing more.
//
//   per key    every command runs whole, at the moment it lands (one at a time)
//   CAS        one counter per process, only grows; a restart starts it again
//   TTL        whole seconds against virtual time; remaining TTL is reported
//              rounded down (a copy made from it never outlives the original)
//   kill       the process and its items are gone; connects are refused
//   restart    a new process (new pid), empty
//   SIGSTOP    commands that land queue up, and run in order on SIGCONT
//
// Replies are the MemcachedNode outcomes (src/routing/node.ts), as the real
// backend's meta replies map to them (src/backends/outcomes.ts).

import type { DumpLine } from '../../src/protocol/backend/meta';
import type { NodeArith, NodeCas, NodeDelete, NodeFlush, NodeGet, NodeStore, NodeTouch, StoreRequest } from '../../src/routing/node';
import type { Scheduler } from './clock';

/** memcached reads a relative expiry above 30 days as a Unix time. */
const MAX_RELATIVE_EXPTIME = 60 * 60 * 24 * 30;
/** The Unix time at virtual time 0. */
export const UNIX_EPOCH_AT_START = 1_700_000_000;
const U64 = (1n << 64n) - 1n;

interface Item {
  value: Buffer;
  flags: number;
  cas: bigint;
  /** Virtual ms; Infinity: never. */
  expiresAt: number;
}

type ProcessState = 'running' | 'stopped' | 'dead';

/** The client end of a connection this process accepted. */
export interface Peer {
  /** The process died: its kernel resets the connection. */
  peerGone(): void;
}

export class SimMemcached {
  state: ProcessState = 'running';
  pid: number;
  private items = new Map<string, Item>();
  private casCounter = 0n;
  /** Commands that landed while stopped, in order. */
  private queued: Array<() => void> = [];
  private readonly peers = new Set<Peer>();

  constructor(
    readonly address: string,
    private readonly scheduler: Scheduler,
    private readonly newPid: () => number,
  ) {
    this.pid = newPid();
  }

  /** A command lands: it runs now, or on SIGCONT; never on a dead process (the caller checks). */
  land(command: () => void): void {
    if (this.state === 'stopped') this.queued.push(command);
    else command();
  }

  accept(peer: Peer): void {
    this.peers.add(peer);
  }

  /** The connection closed at the client's end. */
  forget(peer: Peer): void {
    this.peers.delete(peer);
  }

  /** Told what a kill or restart takes away (the checker excuses what no other copy held). */
  onLoss: (items: ReadonlyMap<string, string>) => void = () => {};

  kill(): void {
    if (this.state !== 'dead') {
      const lost = new Map<string, string>();
      for (const name of [...this.items.keys()]) {
        const item = this.live(name);
        if (item !== undefined) lost.set(name, item.value.toString('latin1'));
      }
      this.onLoss(lost);
    }
    this.state = 'dead';
    this.items = new Map();
    this.queued = [];
    for (const peer of this.peers) peer.peerGone();
    this.peers.clear();
  }

  /** A new, empty process (killed first if it was running). */
  restart(): void {
    this.kill();
    this.state = 'running';
    this.pid = this.newPid();
    this.casCounter = 0n;
  }

  stop(): void {
    if (this.state === 'running') this.state = 'stopped';
  }

  cont(): void {
    if (this.state !== 'stopped') return;
    this.state = 'running';
    const queued = this.queued;
    this.queued = [];
    for (const command of queued) command();
  }

  /** What the key holds now, for the convergence check: no LRU bump, no CAS. */
  peek(key: string): { value: string; expiresAt: number } | undefined {
    const item = this.live(key);
    return item === undefined ? undefined : { value: item.value.toString('latin1'), expiresAt: item.expiresAt };
  }

  /** `lru_crawler metadump all`: every live item, here a snapshot taken at once. */
  dump(): DumpLine[] {
    const lines: DumpLine[] = [];
    for (const name of [...this.items.keys()]) {
      const item = this.live(name);
      if (item === undefined) continue;
      const exp = item.expiresAt === Infinity ? -1 : UNIX_EPOCH_AT_START + Math.floor(item.expiresAt / 1000);
      lines.push({ type: 'dump', key: Buffer.from(name, 'latin1'), exp, cas: item.cas, size: item.value.length });
    }
    return lines;
  }

  get(key: Buffer, touch?: number): NodeGet {
    const item = this.live(key.toString('latin1'));
    if (item === undefined) return { status: 'miss' };
    if (touch !== undefined) item.expiresAt = this.expiry(touch);
    return { status: 'hit', item: { value: item.value, flags: item.flags, cas: item.cas, ttl: this.ttlOf(item) } };
  }

  casOf(key: Buffer): NodeCas {
    const item = this.live(key.toString('latin1'));
    return item === undefined ? { status: 'miss' } : { status: 'hit', cas: item.cas, ttl: this.ttlOf(item) };
  }

  store(req: StoreRequest): NodeStore {
    const name = req.key.toString('latin1');
    const old = this.live(name);
    const compares = req.mode === 'cas' || (req.cas !== 0n && req.mode !== 'add');
    if (compares) {
      if (old === undefined) return { status: 'not_found' };
      if (old.cas !== req.cas) return { status: 'exists' };
    }
    switch (req.mode) {
      case 'add':
        if (old !== undefined) return { status: 'not_stored' };
        break;
      case 'replace':
      case 'append':
      case 'prepend':
        if (old === undefined) return { status: 'not_stored' };
        break;
      case 'set':
      case 'cas':
        break;
    }
    if (old !== undefined && (req.mode === 'append' || req.mode === 'prepend')) {
      // The original's flags and expiry stay.
      const value = req.mode === 'append' ? Buffer.concat([old.value, req.value]) : Buffer.concat([req.value, old.value]);
      return { status: 'stored', cas: this.put(name, value, old.flags, old.expiresAt) };
    }
    return { status: 'stored', cas: this.put(name, Buffer.from(req.value), req.flags, this.expiry(req.exptime)) };
  }

  delete(key: Buffer, cas: bigint): NodeDelete {
    const name = key.toString('latin1');
    const old = this.live(name);
    if (old === undefined) return { status: 'not_found' };
    if (cas !== 0n && old.cas !== cas) return { status: 'exists' };
    this.items.delete(name);
    return { status: 'deleted' };
  }

  /** A touch leaves the CAS as it was. */
  touch(key: Buffer, exptime: number): NodeTouch {
    const item = this.live(key.toString('latin1'));
    if (item === undefined) return { status: 'not_found' };
    item.expiresAt = this.expiry(exptime);
    return { status: 'touched', cas: item.cas };
  }

  arith(kind: 'incr' | 'decr', key: Buffer, delta: bigint, create?: { initial: bigint; exptime: number }): NodeArith {
    const name = key.toString('latin1');
    const old = this.live(name);
    if (old === undefined) {
      if (create === undefined) return { status: 'not_found' };
      const value = Buffer.from(create.initial.toString());
      return { status: 'ok', value: create.initial, cas: this.put(name, value, 0, this.expiry(create.exptime)) };
    }
    const text = old.value.toString('latin1');
    if (!/^\d{1,20}$/.test(text) || BigInt(text) > U64) return { status: 'non_numeric' };
    const now = BigInt(text);
    const value = kind === 'incr' ? (now + delta) & U64 : now > delta ? now - delta : 0n;
    return { status: 'ok', value, cas: this.put(name, Buffer.from(value.toString()), old.flags, old.expiresAt) };
  }

  flush(delay: number): NodeFlush {
    if (delay <= 0) this.items = new Map();
    else {
      const pid = this.pid;
      this.scheduler.after(delay * 1000, () => {
        if (this.pid === pid && this.state !== 'dead') this.items = new Map();
      });
    }
    return { status: 'ok' };
  }

  private put(name: string, value: Buffer, flags: number, expiresAt: number): bigint {
    const cas = ++this.casCounter;
    this.items.set(name, { value, flags, cas, expiresAt });
    return cas;
  }

  /** The item, unless it expired (then it is dropped, as memcached does lazily). */
  private live(name: string): Item | undefined {
    const item = this.items.get(name);
    if (item === undefined) return undefined;
    if (item.expiresAt <= this.scheduler.now) {
      this.items.delete(name);
      return undefined;
    }
    return item;
  }

  /** Virtual ms at which an item stored now with `exptime` expires. */
  private expiry(exptime: number): number {
    if (exptime === 0) return Infinity;
    if (exptime < 0) return this.scheduler.now; // expired at once
    if (exptime > MAX_RELATIVE_EXPTIME) return (exptime - UNIX_EPOCH_AT_START) * 1000;
    return this.scheduler.now + exptime * 1000;
  }

  private ttlOf(item: Item): number {
    return item.expiresAt === Infinity ? -1 : Math.max(0, Math.floor((item.expiresAt - this.scheduler.now) / 1000));
  }
}
