// A shared refill: with N sidecars over the same backends, a memcached that
// restarted empty would be refilled N times, once by each. The first sidecar to
// start its refill takes a claim on the restarted process itself and refills it;
// the others keep distrusting it and wait until the claimant marks it refilled.
//
//   claim  add  replicached:refill-claim:<pid>:<start>  <owner>  TTL ttlSeconds, renewed
//               (CAS-guarded set) every ttlSeconds/3 while the claimant's run goes on
//   list   set  replicached:refill-listing:<pid>:<start>, before the claimant lists the keys
//   mark   set  replicached:refilled:<pid>:<start>  (no TTL), once the claimant's run
//               completed (every key listed and done); then the claim is deleted
//   wait   every pollMs: the mark ──> refilled (trust it); no claim ──> take it; else wait
//
// Why a late sidecar refills alone: until it saw the backend up, a sidecar wrote
// that backend's keys to stand-ins. Those writes are on the peers before the
// claimant lists them only if the sidecar saw the backend up before the listing
// began. So a sidecar that finds the listing key already there when its run starts
// (it saw the backend up after the listing began) does not wait for the mark: it
// refills by itself, as it would without a claim (add only, nothing is lost).
//
// Safe when the claimant dies or stalls: its claim expires within ttlSeconds and the
// next waiter takes it over and refills (add only: what the first one copied stays). A
// claimant whose run is aborted releases the claim at once. Both keys live on the
// restarted process and are named by its identity, so a later restart (which empties
// it) starts afresh. A backend that cannot answer the claim is refilled by everyone.
// The sidecars must run the same backend list (they must anyway: one ring).

import type { MemcachedNode } from '../routing/node';
import type { Clock } from './rate-limiter';

/** Keys replicached keeps on the backends for itself; resyncs never copy or prune them. */
export const RESERVED_PREFIX = 'replicached:';

export function isReserved(key: Buffer): boolean {
  return key.length >= RESERVED_PREFIX.length && key.toString('latin1', 0, RESERVED_PREFIX.length) === RESERVED_PREFIX;
}

export interface ClaimOptions {
  /** How long a claim lives without renewal: how soon another sidecar takes over from a dead claimant. */
  ttlSeconds: number;
  /** How often a waiting sidecar looks for the mark (two small requests each time). */
  pollMs: number;
  clock: Clock;
}

export const DEFAULT_CLAIM_OPTIONS: Readonly<Omit<ClaimOptions, 'clock'>> = Object.freeze({ ttlSeconds: 10, pollMs: 250 });

/**
 * held: this sidecar refills (and marks); refilled: another one did; late: another one's
 * listing began before this sidecar saw the backend up, so this one refills alone;
 * stopped: the run ended while waiting.
 */
export type ClaimOutcome = 'held' | 'refilled' | 'late' | 'stopped';

export class RefillClaim {
  private readonly claimKey: Buffer;
  private readonly listingKey: Buffer;
  private readonly markKey: Buffer;
  private cas = 0n;
  private renewer: NodeJS.Timeout | null = null;

  constructor(
    private readonly target: MemcachedNode,
    identity: { pid: number; startedAt: number },
    private readonly owner: string,
    private readonly opts: ClaimOptions,
  ) {
    const who = `${identity.pid}:${identity.startedAt}`;
    this.claimKey = Buffer.from(`${RESERVED_PREFIX}refill-claim:${who}`, 'latin1');
    this.markKey = Buffer.from(`${RESERVED_PREFIX}refilled:${who}`, 'latin1');
    this.listingKey = Buffer.from(`${RESERVED_PREFIX}refill-listing:${who}`, 'latin1');
  }

  /**
   * Waits until this sidecar holds the claim, another one's refill completed, or `stopped()`.
   * `waiting` is called once another sidecar's claim is found in the way.
   */
  async acquire(stopped: () => boolean, waiting: () => void = () => {}): Promise<ClaimOutcome> {
    let told = false;
    // Asked once, when this sidecar's run starts (it has seen the backend up): see the head comment.
    const listing = await this.target.get(this.listingKey);
    if (listing.status !== 'miss') return 'late';
    for (;;) {
      if (stopped()) return 'stopped';
      const mark = await this.target.get(this.markKey);
      if (mark.status === 'hit') return 'refilled';
      const value = Buffer.from(this.owner, 'latin1');
      const r = await this.target.store({ mode: 'add', key: this.claimKey, value, flags: 0, exptime: this.opts.ttlSeconds, cas: 0n });
      // A backend that cannot take the claim: refill it ourselves, as without one.
      if (r.status === 'stored' || r.status === 'failed') {
        this.cas = r.status === 'stored' ? r.cas : 0n;
        this.keepAlive();
        return 'held';
      }
      if (!told) waiting();
      told = true;
      await this.opts.clock.sleep(this.opts.pollMs);
    }
  }

  /** The claimant is about to list the keys: sidecars that see the backend up from now on refill alone. */
  async listing(): Promise<void> {
    const value = Buffer.from(this.owner, 'latin1');
    await this.target.store({ mode: 'set', key: this.listingKey, value, flags: 0, exptime: 0, cas: 0n });
  }

  /** The claimant's run completed: mark the backend refilled, then drop the claim. */
  async complete(): Promise<void> {
    this.stopRenewing();
    await this.target.store({ mode: 'set', key: this.markKey, value: Buffer.from(this.owner, 'latin1'), flags: 0, exptime: 0, cas: 0n });
    await this.release();
  }

  /** The claimant's run did not complete: let another sidecar take over now. */
  async release(): Promise<void> {
    this.stopRenewing();
    if (this.cas !== 0n) await this.target.delete(this.claimKey, this.cas);
    this.cas = 0n;
  }

  private keepAlive(): void {
    if (this.cas === 0n) return;
    this.renewer = setInterval(() => void this.renew(), (this.opts.ttlSeconds * 1000) / 3);
    this.renewer.unref();
  }

  private async renew(): Promise<void> {
    const value = Buffer.from(this.owner, 'latin1');
    const r = await this.target.store({ mode: 'set', key: this.claimKey, value, flags: 0, exptime: this.opts.ttlSeconds, cas: this.cas });
    // Lost (it expired and another sidecar took it): our run goes on, adding what is missing, as theirs does.
    if (r.status === 'stored') this.cas = r.cas;
    else if (r.status !== 'failed') this.stopRenewing();
  }

  private stopRenewing(): void {
    if (this.renewer !== null) clearInterval(this.renewer);
    this.renewer = null;
  }
}
