// One client connection's view of the router: its requests take effect in the
// order it sent them, as memcached gives a connection.
//
//   per key         every request enters the process-wide KeySequencer when it is
//                   parsed: no later request for the key, from any connection,
//                   overtakes it or its follow-up steps
//   per connection  a request starts only after every earlier write of this
//                   connection has taken effect on every member (its reply is
//                   known); reads pipelined after reads run together
//
// A write's follow-up steps (the convergence check against the authority, read
// repair's verification) hold the key, not the connection: the client gets its
// reply as soon as the write took effect, and the next request for the key
// waits for the rest.
//
// Waits only ever point at requests that arrived earlier (the key line and the
// connection's last write are both taken at arrival), so they cannot form a cycle.

import type {
  ArithCommand,
  ArithOutcome,
  DeleteOutcome,
  FlushOutcome,
  GetOutcome,
  Router,
  StoreFields,
  StoreOutcome,
  TouchOutcome,
} from '../protocol/types';
import type { Access, KeySequencer } from './key-sequencer';
import type { FollowUps, ReplicatedRouter } from './replicated-router';

/** A write of this connection that has not yet taken effect; requests after it wait. */
class PendingWrite {
  private waiters: Array<() => void> | null = [];

  get done(): boolean {
    return this.waiters === null;
  }

  whenDone(run: () => void): void {
    if (this.waiters === null) run();
    else this.waiters.push(run);
  }

  finish(): void {
    const waiters = this.waiters;
    this.waiters = null;
    if (waiters !== null) for (const run of waiters) run();
  }
}

/**
 * Told when each request starts and ends, follow-up steps included (src/trust/agent.ts:
 * a change of trust is acknowledged only once the requests of the older view ended).
 */
export interface RequestScopes {
  admit(scope: FollowUps): void;
  release(scope: FollowUps): void;
}

export class OrderedRouter implements Router {
  /** The connection's latest write not yet done; writes run one after another, so it implies the earlier ones. */
  private lastWrite: PendingWrite | null = null;

  constructor(
    private readonly keys: KeySequencer,
    private readonly inner: ReplicatedRouter,
    private readonly scopes?: RequestScopes,
  ) {}

  get(key: Buffer, touch?: number): Promise<GetOutcome> {
    // gat changes the expiry on every member: a write.
    return this.inTurn(key, touch === undefined ? 'read' : 'write', (later) => this.inner.get(key, touch, later));
  }

  store(cmd: StoreFields): Promise<StoreOutcome> {
    return this.inTurn(cmd.key, 'write', (later) => this.inner.store(cmd, later));
  }

  delete(key: Buffer, cas: bigint): Promise<DeleteOutcome> {
    return this.inTurn(key, 'write', (later) => this.inner.delete(key, cas, later));
  }

  touch(key: Buffer, exptime: number): Promise<TouchOutcome> {
    return this.inTurn(key, 'write', (later) => this.inner.touch(key, exptime, later));
  }

  arith(cmd: ArithCommand): Promise<ArithOutcome> {
    return this.inTurn(cmd.key, 'write', (later) => this.inner.arith(cmd, later));
  }

  /** flush_all touches every key: it keeps the connection's order, not a key's. */
  flush(delay: number): Promise<FlushOutcome> {
    const { prior, mine } = this.arrive('write');
    return new Promise((resolve) => {
      const go = (): void => {
        void this.inner.flush(delay).then((outcome) => {
          mine?.finish();
          resolve(outcome);
        });
      };
      if (prior === null) go();
      else prior.whenDone(go);
    });
  }

  private arrive(access: Access): { prior: PendingWrite | null; mine: PendingWrite | null } {
    const prior = this.lastWrite !== null && !this.lastWrite.done ? this.lastWrite : null;
    if (access === 'read') return { prior, mine: null };
    const mine = new PendingWrite();
    this.lastWrite = mine;
    return { prior, mine };
  }

  private inTurn<O>(key: Buffer, access: Access, op: (later: FollowUps) => Promise<O>): Promise<O> {
    const { prior, mine } = this.arrive(access);
    return new Promise<O>((resolve) => {
      this.keys.enter(key, access, (leave) => {
        const go = (): void => {
          const later: FollowUps = [];
          const scopes = this.scopes;
          scopes?.admit(later);
          const end =
            scopes === undefined
              ? leave
              : (): void => {
                  scopes.release(later);
                  leave();
                };
          void op(later).then((outcome) => {
            mine?.finish();
            resolve(outcome);
            if (later.length === 0) end();
            else void Promise.allSettled(later).then(end);
          });
        };
        if (prior === null) go();
        else prior.whenDone(go);
      });
    });
  }
}
