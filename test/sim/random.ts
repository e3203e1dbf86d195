// The one source of randomness in the simulation: mulberry32, seeded. Each
// consumer (the fault schedule, each client, each network path) takes its own
// stream, derived from the run's seed and a name, so that drawing one more
// number in one place does not reshuffle everything else: a seed that fails
// keeps failing the same way while the harness around it changes a little.

/** FNV-1a over a string, mixed with the seed: the start of a named stream. */
function derive(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export class Rng {
  private state: number;

  constructor(
    private readonly seed: number,
    name = '',
  ) {
    this.state = derive(seed, name);
  }

  /** An independent stream of the same seed. */
  stream(name: string): Rng {
    return new Rng(this.seed, name);
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from nothing');
    return items[Math.floor(this.next() * items.length)];
  }
}
