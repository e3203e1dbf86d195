// A reload with zones: which kept backends become the first of keys they hold no copy of,
// and so are refilled, by agreement, before they decide (src/reload.ts, zoneMatesToRefill).

import { describe, expect, it } from 'vitest';
import { zoneMatesToRefill } from '../../src/reload';
import { load } from './support';

describe('zoneMatesToRefill: the backends a reload makes the first of keys they hold no copy of', () => {
  const zoned = (list: string): string => `backends:\n${list}`;
  const six = zoned(['a', 'b', 'c', 'a', 'b', 'c'].map((z, i) => `  - { address: "127.0.0.1:${1001 + i}", zone: ${z} }\n`).join(''));
  it('a removed backend: the kept ones of its zone', () => {
    const next = zoned(['b', 'c', 'a', 'b', 'c'].map((z, i) => `  - { address: "127.0.0.1:${1002 + i}", zone: ${z} }\n`).join(''));
    expect(zoneMatesToRefill(load([], six), load([], next))).toEqual(['127.0.0.1:1004']);
  });
  it('a backend moved to another zone: the kept ones of both zones, itself included', () => {
    const next = six.replace('"127.0.0.1:1001", zone: a', '"127.0.0.1:1001", zone: d');
    expect(zoneMatesToRefill(load([], six), load([], next))).toEqual(['127.0.0.1:1001', '127.0.0.1:1004']);
  });
  it('an added backend, or no zones: none', () => {
    expect(zoneMatesToRefill(load([], six), load([], `${six}  - { address: "127.0.0.1:1007", zone: a }\n`))).toEqual([]);
    expect(zoneMatesToRefill(load(['--backends', '127.0.0.1:1,127.0.0.1:2,127.0.0.1:3']), load(['--backends', '127.0.0.1:1,127.0.0.1:2']))).toEqual([]);
  });
});
