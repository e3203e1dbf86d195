// Merges the `stats items`, `stats slabs` and `stats sizes` tables of several memcached into
// one table in memcached's own shape, so that tools which read one memcached read the cluster.
//
//   a figure on several backends     their sum (items stored, pages, hits: every replica's copy
//                                    counts, so with R replicas an item counts R times)
//   a per-class constant or an age   the largest (chunk_size, chunks_per_page, age, age_hot,
//                                    age_warm, evicted_time; active_slabs)
//   a word (sizes_status disabled)   the first backend's
//
// Rows come out in memcached's order: by slab class (or size bucket), then the totals.

const LARGEST = /(?:^|:)(?:chunk_size|chunks_per_page|age|age_hot|age_warm|evicted_time|active_slabs)$/;
const INTEGER = /^-?\d+$/;
/** "items:7:number" and "7:chunk_size" belong to class 7; "96" is the 96-byte size bucket. */
const CLASS = /^(?:items:)?(\d+)(?::|$)/;

export function mergeStats(answers: ReadonlyArray<ReadonlyMap<string, string>>): Array<[string, string]> {
  const merged = new Map<string, string>();
  for (const answer of answers) {
    for (const [name, value] of answer) {
      const before = merged.get(name);
      if (before === undefined) merged.set(name, value);
      else if (INTEGER.test(before) && INTEGER.test(value)) merged.set(name, combine(name, BigInt(before), BigInt(value)));
    }
  }
  const rank = (name: string): number => {
    const m = CLASS.exec(name);
    return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
  };
  // Array.prototype.sort is stable: a class keeps its rows in the order memcached wrote them.
  return [...merged].sort(([a], [b]) => rank(a) - rank(b));
}

function combine(name: string, a: bigint, b: bigint): string {
  if (!LARGEST.test(name)) return String(a + b);
  return String(a > b ? a : b);
}
