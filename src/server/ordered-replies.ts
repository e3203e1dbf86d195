// Replies leave in request order, whatever order the backends answer in.
// Each request reserves a slot when it is parsed; a slot that finishes early
// waits for the ones before it. A slot may finish with no bytes (noreply,
// quiet binary requests) or with "close": the connection ends right there,
// after everything before it was written.

export const CLOSE = Symbol('close connection');
/** A last reply: write it, then close the connection. */
export interface FinalReply {
  final: Buffer;
}
export type SlotResult = Buffer | Buffer[] | null | typeof CLOSE | FinalReply;

/** A slot whose reply has not arrived yet. */
const WAITING = Symbol('waiting');

export interface ReplySink {
  write(chunks: Buffer[]): void;
  close(): void;
  /** After each reply has been filed (and whatever it released written). */
  settled(): void;
}

export class OrderedReplies {
  /** Replies by slot; slot n lives at index n - base. */
  private readonly slots: Array<SlotResult | typeof WAITING> = [];
  private base = 0;
  private head = 0;
  private closed = false;

  constructor(private readonly sink: ReplySink) {}

  /** Requests whose replies are not yet written. */
  get pending(): number {
    return this.slots.length - this.head;
  }

  /** Reserve the next place in line; call the returned function exactly once with the reply. */
  reserve(): (result: SlotResult) => void {
    const n = this.base + this.slots.length;
    this.slots.push(WAITING);
    // One closure per request, holding only its slot number.
    return (result) => {
      this.slots[n - this.base] = result;
      if (n - this.base === this.head) this.flush();
      this.sink.settled();
    };
  }

  private flush(): void {
    const out: Buffer[] = [];
    while (!this.closed && this.head < this.slots.length) {
      const result = this.slots[this.head];
      if (result === WAITING) break;
      this.slots[this.head] = null; // the buffers go to the socket; do not hold them here
      this.head++;
      if (result === CLOSE) {
        this.closed = true;
      } else if (result !== null && 'final' in result) {
        out.push(result.final);
        this.closed = true;
      } else if (Array.isArray(result)) {
        for (const b of result) out.push(b);
      } else if (result !== null) {
        out.push(result);
      }
    }
    // Compact now and then so the array does not grow with the connection's life.
    if (this.head > 1024 && this.head * 2 > this.slots.length) {
      this.slots.splice(0, this.head);
      this.base += this.head;
      this.head = 0;
    }
    if (out.length > 0) this.sink.write(out);
    if (this.closed) this.sink.close();
  }
}
