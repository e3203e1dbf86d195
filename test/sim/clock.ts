// Virtual time. One Scheduler holds every timer and every delivery of the
// simulation, ordered by due time; run() takes the next due event, moves the
// clock to it, runs it, and lets every promise continuation it caused run to
// the end before the next event (a "step"). Nothing reads real time, so the
// whole run is a function of the seed.
//
// Draining: the router is real code full of `await`; its continuations are
// microtasks. After each event the loop waits on process.nextTick, whose
// callback Node runs only once V8's microtask queue is empty, including the
// microtasks queued while it drained: every continuation caused by the event
// has run, however deep the chain. Every YIELD_EVERY steps it waits on
// setImmediate instead (also a full drain) so the test runner's own I/O is
// not starved; neither is timed, so neither changes the order of anything.
//
// Processes: an event may belong to a Process (a sidecar). A stalled process
// (its event loop blocked) runs nothing until the stall ends: its timers and
// the replies delivered to it are deferred to that moment, then run in the
// order they were originally due. A dead process's events are dropped.

import type { Clock } from '../../src/resync/rate-limiter';

const YIELD_EVERY = 1024;

export class Process {
  /** Virtual time until which the event loop is blocked. */
  stalledUntil = 0;
  dead = false;

  constructor(readonly name: string) {}
}

export interface Timer {
  cancel(): void;
}

class SimEvent implements Timer {
  cancelled = false;

  constructor(
    /** When it runs: `at`, or later while its process is stalled. */
    public due: number,
    /** When it was first due: orders events deferred to the same moment. */
    readonly at: number,
    readonly seq: number,
    readonly run: () => void,
    readonly owner: Process | null,
  ) {}

  cancel(): void {
    this.cancelled = true;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  if (a.due !== b.due) return a.due < b.due;
  if (a.at !== b.at) return a.at < b.at;
  return a.seq < b.seq;
}

function drained(yieldToLoop: boolean): Promise<void> {
  return new Promise((resolve) => (yieldToLoop ? setImmediate(resolve) : process.nextTick(resolve)));
}

export class Scheduler {
  /** Virtual real time, ms. */
  now = 0;
  /** Events run so far. */
  steps = 0;
  private readonly heap: SimEvent[] = [];
  private seq = 0;

  at(time: number, run: () => void, owner: Process | null = null): Timer {
    const t = Math.max(time, this.now);
    const event = new SimEvent(t, t, this.seq++, run, owner);
    this.push(event);
    return event;
  }

  after(ms: number, run: () => void, owner: Process | null = null): Timer {
    return this.at(this.now + Math.max(0, ms), run, owner);
  }

  /** Runs events until `stop` says so or none is left; false when none is left. */
  async run(stop: () => boolean): Promise<boolean> {
    while (!stop()) {
      const event = this.pop();
      if (event === undefined) return false;
      if (event.cancelled || event.owner?.dead === true) continue;
      if (event.owner !== null && event.owner.stalledUntil > event.due) {
        event.due = event.owner.stalledUntil;
        this.push(event);
        continue;
      }
      this.now = event.due;
      this.steps++;
      event.run();
      await drained(this.steps % YIELD_EVERY === 0);
    }
    return true;
  }

  private push(event: SimEvent): void {
    const heap = this.heap;
    let i = heap.length;
    heap.push(event);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(event, heap[parent])) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = event;
  }

  private pop(): SimEvent | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right], heap[left]) ? right : left;
      if (!before(heap[child], last)) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
    return top;
  }
}

/**
 * One process's monotonic clock: its own origin, and a rate within ±10% of
 * real time (the protocol's ρ). Its timers belong to the process, so a stall
 * defers them and a death drops them.
 */
export class LocalClock implements Clock {
  private readonly start: number;

  constructor(
    private readonly scheduler: Scheduler,
    readonly process: Process,
    readonly rate: number,
    private readonly origin: number,
  ) {
    this.start = scheduler.now;
  }

  now(): number {
    return this.origin + (this.scheduler.now - this.start) * this.rate;
  }

  /** Runs `run` after `ms` of this clock. */
  timer(ms: number, run: () => void): Timer {
    return this.scheduler.after(Math.max(0, ms) / this.rate, run, this.process);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.timer(ms, resolve));
  }
}
