// How the parser fuzz tests cut a stream into the chunks they push: the requests
// parsed must not depend on where the cuts fall.

import fc from 'fast-check';

/** Cut points for a buffer, any naturals: split() takes them modulo its length. */
export const cuts = fc.array(fc.nat(), { maxLength: 12 });

/** `buf` in chunks whose boundaries are `points` mod its length, sorted, inside (0, length). */
export function split(buf: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => (buf.length === 0 ? 0 : p % buf.length)))].filter((p) => p > 0).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of at) {
    chunks.push(buf.subarray(from, p));
    from = p;
  }
  chunks.push(buf.subarray(from));
  return chunks;
}
