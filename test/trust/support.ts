// Shared by the trust agent's unit tests: an in-memory stand-in for memcached (only the reads
// and adds the agent makes, with one CAS counter per server, and a switch that cuts it off
// from the sidecar) and an agent over such nodes with its state exposed.
//
//   const [X, Y] = ['x:1', 'y:1'].map((a) => new FakeNode(a));
//   const { agent, state } = agentOver('late', [X, Y]);

import type { MemcachedNode, NodeGet, NodeStore } from '../../src/routing/node';
import type { StoreFields } from '../../src/protocol/types';
import type { Clock } from '../../src/resync/rate-limiter';
import { TrustAgent } from '../../src/trust/agent';
import { timingFor, type TrustState, type TrustTiming } from '../../src/trust/protocol';
import { pollUntil } from '../helpers/wait';

/** A memcached as far as the agent's reads and adds go: values with CAS, or cut off (every op fails). */
export class FakeNode {
  private cas = 0n;
  private readonly items = new Map<string, { value: Buffer; cas: bigint }>();
  constructor(
    readonly address: string,
    public reachable = true,
  ) {}
  put(key: Buffer, value: string): bigint {
    this.cas++;
    this.items.set(key.toString('latin1'), { value: Buffer.from(value), cas: this.cas });
    return this.cas;
  }
  async get(key: Buffer): Promise<NodeGet> {
    if (!this.reachable) return { status: 'failed', reason: 'cut off' } as NodeGet;
    const item = this.items.get(key.toString('latin1'));
    return item === undefined ? { status: 'miss' } : { status: 'hit', item: { value: item.value, flags: 0, cas: item.cas, ttl: 0 } };
  }
  async store(f: StoreFields): Promise<NodeStore> {
    if (!this.reachable) return { status: 'failed', reason: 'cut off' } as NodeStore;
    if (f.mode === 'add' && this.items.has(f.key.toString('latin1'))) return { status: 'not_stored' };
    return { status: 'stored', cas: this.put(f.key, f.value.toString('latin1')) } as NodeStore;
  }
}

/** The unit tests' timing: a 1 s lease. */
export const TEST_TIMING: TrustTiming = timingFor(1000);

/** A sidecar's agent over `nodes` (their order is every key's), not started, and its protocol state. */
export function agentOver(id: string, nodes: readonly FakeNode[], clock: Clock = { now: () => 0, sleep: async () => {} }): { agent: TrustAgent; state: TrustState } {
  const boards = nodes as unknown as MemcachedNode[];
  const agent = new TrustAgent({ id, boards, replicas: 2, ringOrder: () => boards, clock, timing: TEST_TIMING });
  return { agent, state: (agent as unknown as { state: TrustState }).state };
}

/**
 * The order in which the backends `indexes` name become trusted (`role` read every 2 ms), once
 * all of them are; fails after 30 s.
 */
export async function trustedInOrder(role: (i: number) => string, indexes: readonly number[], message?: string): Promise<number[]> {
  const order: number[] = [];
  await pollUntil(
    () => {
      for (const i of indexes) if (role(i) === 'trusted' && !order.includes(i)) order.push(i);
      return order.length === indexes.length;
    },
    30_000,
    2,
    message,
  );
  return order;
}
