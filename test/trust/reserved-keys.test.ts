// The registry of replicached's own keys is the one list: every key the code builds is in
// it, every one expires (the resync mark is stored already expired), and the operators'
// table in docs/operations.md names each.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import {
  INCARNATION_KEY,
  MARK_KEY,
  RESERVED_KEYS,
  RESERVED_PREFIX,
  ROSTER_KEY,
  copiedRecordKey,
  deleteRecordKey,
  isReserved,
  leftAfterKey,
  outAppliedKey,
  recordKey,
  refillBeganKey,
  refillKey,
  standInKey,
  tookTrustedKey,
} from '../../src/trust/reserved-keys';

/** A registry name with its <placeholders> as a pattern. */
const pattern = (name: string): RegExp => new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/<[^>]+>/g, '.+')}$`);

test('every key the code builds is in the registry, under the reserved prefix', () => {
  const built = [recordKey('web-1-1234-ab12cd34'), ROSTER_KEY, INCARNATION_KEY, standInKey('10.0.0.3:11211', 7), refillKey('10.0.0.3:11211', 8), refillBeganKey(9),
    outAppliedKey('10.0.0.3:11211', 10), leftAfterKey('10.0.0.3:11211', 11), tookTrustedKey('10.0.0.3:11211', 12), deleteRecordKey(Buffer.from('memc.sess.key.abc')),
    copiedRecordKey(Buffer.from('memc.sess.key.abc')), MARK_KEY];
  for (const key of built) {
    const name = key.toString();
    expect(isReserved(key), name).toBe(true);
    expect(name.startsWith(RESERVED_PREFIX), name).toBe(true);
    expect(RESERVED_KEYS.filter((k) => pattern(k.name).test(name)), name).toHaveLength(1);
  }
  expect(isReserved(Buffer.from('memc.sess.key.abc'))).toBe(false);
});

test('every reserved key expires: a TTL, or stored already expired (the resync mark)', () => {
  for (const k of RESERVED_KEYS) {
    if (k.name === MARK_KEY.toString()) expect(k.ttlSeconds).toBe(0);
    else expect(k.ttlSeconds, k.name).toBeGreaterThan(0);
    expect(k.writer.length, k.name).toBeGreaterThan(0);
    expect(k.meaning.length, k.name).toBeGreaterThan(0);
  }
});

test("docs/operations.md's table of replicached's own keys names every registered key but the resync mark", () => {
  const doc = readFileSync(path.resolve(__dirname, '..', '..', 'docs', 'operations.md'), 'utf8');
  for (const k of RESERVED_KEYS) if (k.name !== MARK_KEY.toString()) expect(doc, k.name).toContain(`\`${k.name}\``);
});
