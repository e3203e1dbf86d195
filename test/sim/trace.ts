// What happened, for a human reading a failing seed: the last events (time,
// sidecar, backend, op, key, result), and a running hash of every event so
// that two runs of one seed can be shown identical without keeping them whole.

interface TraceEntry {
  t: number;
  who: string;
  backend: string;
  op: string;
  key: string;
  result: string;
}

/** A reply or outcome in a few words: its status, and the value or CAS it carries. */
export function describe(r: { status: string }): string {
  const o = r as { status: string; reason?: string; cas?: bigint; value?: bigint; item?: { value: Buffer; cas: bigint } };
  if (o.item !== undefined) return `${o.status} ${o.item.value.toString('latin1')} cas=${o.item.cas}`;
  if (o.reason !== undefined) return `${o.status}: ${o.reason}`;
  if (o.value !== undefined) return `${o.status} ${o.value}`;
  if (o.cas !== undefined) return `${o.status} cas=${o.cas}`;
  return o.status;
}

export class Trace {
  private readonly entries: TraceEntry[] = [];
  private next = 0;
  /** FNV-1a over every event recorded. */
  hash = 0x811c9dc5;
  count = 0;

  constructor(
    private readonly now: () => number,
    private readonly keep = 200,
  ) {}

  /** `kept` false: hashed, not kept (the trust protocol's own traffic would crowd out the rest). */
  record(who: string, backend: string, op: string, key: string, result: string, kept = true): void {
    const entry = { t: this.now(), who, backend, op, key, result };
    if (kept) {
      if (this.entries.length < this.keep) this.entries.push(entry);
      else this.entries[this.next] = entry;
      this.next = (this.next + 1) % this.keep;
    }
    this.count++;
    const line = format(entry);
    let h = this.hash;
    for (let i = 0; i < line.length; i++) h = Math.imul(h ^ line.charCodeAt(i), 0x01000193) >>> 0;
    this.hash = h;
  }

  /** The kept events, oldest first, one line each. */
  lines(): string[] {
    const ordered = this.entries.length < this.keep ? this.entries : [...this.entries.slice(this.next), ...this.entries.slice(0, this.next)];
    return ordered.map(format);
  }
}

function format(e: TraceEntry): string {
  return `${(e.t / 1000).toFixed(4).padStart(10)}s  ${e.who.padEnd(8)} ${e.backend.padEnd(4)} ${e.op.padEnd(9)} ${e.key.padEnd(13)} ${e.result}`;
}
