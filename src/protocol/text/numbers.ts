// Numbers as memcached reads them from a text command line (strtol & co. in the C locale).
// Pure; shared by the request parser and the admin commands.

const SPACE = 0x20;
const MINUS = 0x2d;

/** isspace() in the C locale. */
export function isSpace(b: number): boolean {
  return b === SPACE || (b >= 0x09 && b <= 0x0d);
}

/**
 * The integer strtol & co. read from buf[start, end): leading whitespace, an optional sign,
 * decimal digits, then the end of the token or whitespace. A number when it has at most 15
 * significant digits, a bigint up to 20, and null when malformed or beyond 20 digits (out of
 * range for every C type memcached reads into).
 */
export function readInteger(buf: Buffer, start: number, end: number): number | bigint | null {
  let i = start;
  while (i < end && isSpace(buf[i])) i++;
  let negative = false;
  if (i < end && (buf[i] === 0x2b || buf[i] === MINUS)) {
    negative = buf[i] === MINUS;
    i++;
  }
  const digitsStart = i;
  while (i < end && buf[i] >= 0x30 && buf[i] <= 0x39) i++;
  if (i === digitsStart) return null;
  if (i < end && !isSpace(buf[i])) return null;
  let first = digitsStart;
  while (first < i - 1 && buf[first] === 0x30) first++;
  const digits = i - first;
  if (digits > 20) return null;
  if (digits <= 15) {
    let n = 0;
    for (let j = first; j < i; j++) n = n * 10 + (buf[j] - 0x30);
    return negative ? -n : n;
  }
  const n = BigInt(buf.toString('latin1', first, i));
  return negative ? -n : n;
}

/**
 * strtoull on buf[start, end) as memcached's safe_strtoull uses it: "-n" wraps around, and is
 * refused if that looks negative. Null when refused.
 */
export function strtoull(buf: Buffer, start: number, end: number): bigint | null {
  const r = readInteger(buf, start, end);
  if (r === null) return null;
  const v = BigInt(r);
  if (v >= 2n ** 64n || v <= -(2n ** 64n)) return null; // ERANGE
  const wrapped = BigInt.asUintN(64, v);
  if (wrapped >= 2n ** 63n && buf.subarray(start, end).includes(MINUS)) return null;
  return wrapped;
}

/** memcached's safe_strtoul on one word (its unsigned long is 64-bit). */
export function safeStrtoul(word: string): bigint | null {
  const buf = Buffer.from(word, 'latin1');
  return strtoull(buf, 0, buf.length);
}

/** memcached's safe_strtol on one word: a signed decimal that fits a long, or null. */
export function safeStrtol(word: string): bigint | null {
  const buf = Buffer.from(word, 'latin1');
  const r = readInteger(buf, 0, buf.length);
  if (r === null) return null;
  const v = BigInt(r);
  return v >= -(2n ** 63n) && v < 2n ** 63n ? v : null;
}

/** memcached's safe_strtod, for the decimal forms (strtod's inf, nan and hex floats are not taken). */
export function safeStrtod(word: string): number | null {
  const m = /^[\t\n\v\f\r ]*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:[\t\n\v\f\r ].*)?$/s.exec(word);
  return m ? Number(m[1]) : null;
}
