// A sidecar's round that adds its id to the roster reads the roster again before it reads the
// records: a sidecar that read the roster before this id was on it does not count this one, and
// may apply stages without it meanwhile. The round's first roster read may be long gone by then
// (the process stalled in between, at cluster start say): taken as the ids to read, it would leave
// this sidecar fresh with no peer known, applying its own proposals alone while the others route
// by stages it never read (a stale read, seed 1282).

import { describe, expect, test } from 'vitest';
import type { MemcachedNode, NodeGet, NodeStore } from '../../src/routing/node';
import type { StoreFields } from '../../src/protocol/types';
import { TrustAgent } from '../../src/trust/agent';
import { encodeRecord, timingFor, type TrustRecord, type TrustState } from '../../src/trust/protocol';
import { INCARNATION_KEY, ROSTER_KEY, recordKey } from '../../src/trust/reserved-keys';

/** A memcached as far as a round goes: get, set, add, append. `onStore` runs before a store lands. */
class FakeNode {
  private cas = 0n;
  readonly items = new Map<string, Buffer>();
  onStore: (f: StoreFields) => void = () => {};
  constructor(readonly address: string) {}
  isUp(): boolean {
    return true;
  }
  put(key: Buffer, value: Buffer): void {
    this.items.set(key.toString('latin1'), value);
  }
  async get(key: Buffer): Promise<NodeGet> {
    const value = this.items.get(key.toString('latin1'));
    return value === undefined ? { status: 'miss' } : { status: 'hit', item: { value, flags: 0, cas: ++this.cas, ttl: 0 } };
  }
  async store(f: StoreFields): Promise<NodeStore> {
    this.onStore(f);
    const key = f.key.toString('latin1');
    const had = this.items.get(key);
    if (f.mode === 'add' && had !== undefined) return { status: 'not_stored' };
    if (f.mode === 'append' && had === undefined) return { status: 'not_stored' };
    this.items.set(key, f.mode === 'append' ? Buffer.concat([had!, f.value]) : f.value);
    return { status: 'stored', cas: ++this.cas } as NodeStore;
  }
}

describe('a round that joins the roster', () => {
  test('reads the records of the sidecars that joined before it, not only those on the roster it read first', async () => {
    const [W, Y] = ['w:1', 'y:1'].map((a) => new FakeNode(a));
    const nodes = [W, Y] as unknown as MemcachedNode[];
    W.put(INCARNATION_KEY, Buffer.from('0 0'));
    W.put(ROSTER_KEY, Buffer.from(' gone'));
    const agent = new TrustAgent({
      id: 'late',
      boards: nodes,
      replicas: 2,
      ringOrder: () => nodes,
      clock: { now: () => 0, sleep: async () => {} },
      timing: timingFor(1000),
    });
    const state = (agent as unknown as { state: TrustState }).state;
    // The round read a roster without `p` (only a sidecar gone since); before its own entry lands, `p` joined and put Y out.
    const out = { epoch: 1, role: 'out' as const };
    const p: TrustRecord = { id: 'p', seq: 7, applied: { [Y.address]: out }, seen: { [Y.address]: out }, reach: [W.address] };
    W.onStore = (f) => {
      if (!f.key.equals(ROSTER_KEY)) return;
      W.onStore = () => {};
      W.put(ROSTER_KEY, Buffer.from(' gone p'));
      W.put(recordKey('p'), encodeRecord(p));
    };
    const round = (agent as unknown as { round(node: MemcachedNode, started: number): Promise<unknown> }).round.bind(agent);
    expect(await round(W as unknown as MemcachedNode, 0)).toBeNull();
    expect(W.items.get(ROSTER_KEY.toString('latin1'))?.toString()).toBe(' gone p late');
    // It knows p, and has taken p's stage of Y as its own (it holds Y's keys until it applies it).
    expect(state.liveIds(0)).toEqual(['late', 'p']);
    expect(state.seenRoleOf(Y.address)).toBe('out');
  });
});
