// One link per (web node, backend): what a firewall or a switch does to the packets
// of that pair. Messages each way arrive in the order sent, after a small random
// latency plus any added delay. Frozen one way: that way's messages are held; on
// heal they arrive late, or are lost. Refusing: connects from the node fail at once
// (a REJECT rule). A sidecar that replaces a dead one on the node uses the same links.

import type { Process, Scheduler } from './clock';
import type { Rng } from './random';

export class Link {
  outFrozen = false;
  inFrozen = false;
  /** Added to each message's latency, each way. */
  delayMs = 0;
  refusing = false;
  /**
   * Messages about clients' keys sent (or held) and not yet arrived: at 0 nothing a
   * client did can still land. Connects, probes and reserved keys are not counted.
   */
  inFlight = 0;
  private outTail = 0;
  private inTail = 0;
  private heldOut: Message[] = [];
  private heldIn: Message[] = [];

  constructor(
    private readonly scheduler: Scheduler,
    private readonly rng: Rng,
  ) {}

  /** Toward the backend; `run` when it lands, `lost` if a freeze loses it. */
  toBackend(run: () => void, counted: boolean, lost?: () => void): void {
    const message = { run, owner: null, counted, lost };
    if (counted) this.inFlight++;
    if (this.outFrozen) this.heldOut.push(message);
    else this.outTail = this.schedule(this.outTail, message);
  }

  /** Toward the sidecar; `run` in the sidecar's process when it arrives, `lost` if a freeze loses it. */
  toSidecar(run: () => void, owner: Process, counted: boolean, lost?: () => void): void {
    const message = { run, owner, counted, lost };
    if (counted) this.inFlight++;
    if (this.inFrozen) this.heldIn.push(message);
    else this.inTail = this.schedule(this.inTail, message);
  }

  /** Ends both freezes; what they held arrives now, in order (`late`), or never. */
  heal(late: boolean): void {
    const out = this.heldOut;
    const back = this.heldIn;
    this.heldOut = [];
    this.heldIn = [];
    this.outFrozen = false;
    this.inFrozen = false;
    if (late) {
      for (const message of out) this.outTail = this.schedule(this.outTail, message);
      for (const message of back) this.inTail = this.schedule(this.inTail, message);
    } else {
      for (const message of [...out, ...back]) {
        if (message.counted) this.inFlight--;
        message.lost?.();
      }
    }
  }

  private schedule(tail: number, message: Message): number {
    const at = Math.max(tail, this.scheduler.now + this.rng.between(0.05, 0.4) + this.delayMs);
    this.scheduler.at(at, () => this.arrive(message));
    return at;
  }

  /** At the far end: run, or wait in the socket while the sidecar stalls, or dropped with a dead one. */
  private arrive({ run, owner, counted }: Message): void {
    if (counted) this.inFlight--;
    if (owner === null || owner.stalledUntil <= this.scheduler.now) {
      if (owner?.dead !== true) run();
    } else {
      this.scheduler.at(this.scheduler.now, run, owner);
    }
  }
}

interface Message {
  run: () => void;
  /** The sidecar it is delivered to: deferred while it stalls, dropped once it died. */
  owner: Process | null;
  counted: boolean;
  /**
   * A freeze that ends by losing what it held: TCP gave up on the connection that carried
   * it, so its end learns of a reset (a later message cannot overtake a lost one).
   */
  lost: (() => void) | undefined;
}
