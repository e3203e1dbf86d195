// A scripted in-memory backend for routing tests: it can be marked down, made
// to fail every request (a fault a real memcached reproduces only with timing),
// and it records what it was asked.

import type {
  MemcachedNode,
  NodeArith,
  NodeCas,
  NodeDelete,
  NodeFlush,
  NodeGet,
  NodeStore,
  NodeTouch,
  StoreRequest,
  StoredItem,
} from '../../src/routing/node';

const FAILED = { status: 'failed', reason: 'scripted failure' } as const;

export class FakeNode implements MemcachedNode {
  readonly items = new Map<string, StoredItem>();
  readonly calls: string[] = [];
  up = true;
  failing = false;
  private nextCas = 1n;
  /** Every request waits for this before it acts (see hold()). */
  private gate: Promise<void> = Promise.resolve();

  /** Holds every request from now on (they are recorded at once) until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    this.gate = new Promise((resolve) => (release = resolve));
    return () => {
      this.gate = Promise.resolve();
      release();
    };
  }

  constructor(readonly address: string) {}

  isUp(): boolean {
    return this.up;
  }

  put(key: string, value: string, flags = 0, ttl = -1): void {
    this.items.set(key, { value: Buffer.from(value), flags, cas: this.nextCas++, ttl });
  }

  value(key: string): string | undefined {
    return this.items.get(key)?.value.toString();
  }

  async get(key: Buffer, touch?: number): Promise<NodeGet> {
    this.calls.push(touch === undefined ? `get ${key}` : `gat ${touch} ${key}`);
    await this.gate;
    if (this.failing) return FAILED;
    const item = this.items.get(key.toString());
    if (!item) return { status: 'miss' };
    if (touch !== undefined) item.ttl = touch === 0 ? -1 : touch;
    return { status: 'hit', item: { ...item } };
  }

  async casOf(key: Buffer): Promise<NodeCas> {
    this.calls.push(`cas? ${key}`);
    await this.gate;
    if (this.failing) return FAILED;
    const item = this.items.get(key.toString());
    return item ? { status: 'hit', cas: item.cas, ttl: item.ttl } : { status: 'miss' };
  }

  async store(req: StoreRequest): Promise<NodeStore> {
    this.calls.push(`${req.mode} ${req.key} ${req.value} exptime=${req.exptime}`);
    await this.gate;
    if (this.failing) return FAILED;
    const k = req.key.toString();
    const old = this.items.get(k);
    switch (req.mode) {
      case 'add':
        if (old) return { status: 'not_stored' };
        break;
      case 'replace':
      case 'append':
      case 'prepend':
        if (!old) return { status: 'not_stored' };
        break;
      case 'cas':
        if (!old) return { status: 'not_found' };
        if (old.cas !== req.cas) return { status: 'exists' };
        break;
      case 'set':
        break;
    }
    let value = req.value;
    if (req.mode === 'append') value = Buffer.concat([old!.value, req.value]);
    if (req.mode === 'prepend') value = Buffer.concat([req.value, old!.value]);
    const cas = this.nextCas++;
    const ttl = req.exptime === 0 ? -1 : req.exptime;
    this.items.set(k, { value, flags: req.mode === 'append' || req.mode === 'prepend' ? old!.flags : req.flags, cas, ttl });
    return { status: 'stored', cas };
  }

  async delete(key: Buffer, cas: bigint): Promise<NodeDelete> {
    this.calls.push(`delete ${key}`);
    await this.gate;
    if (this.failing) return FAILED;
    const old = this.items.get(key.toString());
    if (!old) return { status: 'not_found' };
    if (cas !== 0n && old.cas !== cas) return { status: 'exists' };
    this.items.delete(key.toString());
    return { status: 'deleted' };
  }

  async touch(key: Buffer, exptime: number): Promise<NodeTouch> {
    this.calls.push(`touch ${key} ${exptime}`);
    await this.gate;
    if (this.failing) return FAILED;
    const item = this.items.get(key.toString());
    if (!item) return { status: 'not_found' };
    item.ttl = exptime === 0 ? -1 : exptime;
    return { status: 'touched', cas: item.cas };
  }

  async arith(kind: 'incr' | 'decr', key: Buffer, delta: bigint): Promise<NodeArith> {
    this.calls.push(`${kind} ${key} ${delta}`);
    await this.gate;
    if (this.failing) return FAILED;
    const item = this.items.get(key.toString());
    if (!item) return { status: 'not_found' };
    if (!/^\d+$/.test(item.value.toString())) return { status: 'non_numeric' };
    let n = BigInt(item.value.toString());
    n = kind === 'incr' ? (n + delta) % 2n ** 64n : n > delta ? n - delta : 0n;
    item.value = Buffer.from(n.toString());
    item.cas = this.nextCas++;
    return { status: 'ok', value: n, cas: item.cas };
  }

  async flush(): Promise<NodeFlush> {
    this.calls.push('flush');
    await this.gate;
    if (this.failing) return FAILED;
    this.items.clear();
    return { status: 'ok' };
  }
}
