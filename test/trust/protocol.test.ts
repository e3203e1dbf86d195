import { describe, expect, test } from 'vitest';
import {
  FORGET_PEER_AFTER_MS,
  TrustState,
  decodeRecord,
  encodeRecord,
  isNewer,
  leftTrusted,
  place,
  sourcesOf,
  timingFor,
  type Role,
  type TrustRecord,
} from '../../src/trust/protocol';
import { leftOnceSince } from '../../src/trust/agent';

const X = 'x:1';
const Y = 'y:1';
const Z = 'z:1';
const ALL = [X, Y, Z];
const timing = timingFor(1000);

/** A sidecar that has had a round on every backend at `t`, with these other records. */
function sidecar(id: string, t = 0, records: TrustRecord[] = []): TrustState {
  const s = new TrustState(id, ALL, timing);
  for (const a of ALL) s.roundDone(a, t, t, records);
  return s;
}

/** A round on every backend at `t` that read these records. */
function roundsAt(s: TrustState, t: number, records: TrustRecord[]): void {
  for (const b of ALL) s.roundDone(b, t, t, records);
}

/** Publishes what it acknowledged (its older view drained) and returns its record. */
function publish(s: TrustState): TrustRecord {
  s.markPublished(s.acknowledged());
  return s.record(ALL);
}

/** Every backend proposed `role`, published and applied (no other sidecar to wait for). */
function allTo(s: TrustState, role: 'out' | 'refill'): void {
  for (const at of ALL) s.propose(at, role, role === 'out' ? 'failed' : 'reachable');
  publish(s);
  s.tryApply(1);
}

describe('stages', () => {
  test('a higher epoch is newer; at one epoch out beats refill beats trusted', () => {
    expect(isNewer({ epoch: 2, role: 'trusted' }, { epoch: 1, role: 'out' })).toBe(true);
    expect(isNewer({ epoch: 1, role: 'out' }, { epoch: 1, role: 'trusted' })).toBe(true);
    expect(isNewer({ epoch: 1, role: 'refill' }, { epoch: 1, role: 'out' })).toBe(false);
    expect(isNewer({ epoch: 1, role: 'trusted' }, { epoch: 1, role: 'trusted' })).toBe(false);
  });

  test('records survive the wire, and anything else decodes to null', () => {
    const s = sidecar('a');
    s.propose(Y, 'out', 'failed');
    const r = publish(s);
    expect(decodeRecord(encodeRecord(r))).toEqual(r);
    for (const bad of ['', 'null', '{"id":1}', '{"id":"a","seq":1,"applied":{"y":{"epoch":"1","role":"out"}},"seen":{},"reach":[]}', '\u0000'])
      expect(decodeRecord(Buffer.from(bad))).toBeNull();
  });
});

describe('placement', () => {
  const roles = (m: Record<string, Role>) => (a: string) => m[a] ?? 'trusted';

  test('the first R trusted in ring order; the first trusted natural member decides', () => {
    expect(place([Y, X, Z], 2, roles({}))).toEqual({ members: [Y, X], authority: Y });
    expect(place([Y, X, Z], 2, roles({ [Y]: 'out' }))).toEqual({ members: [X, Z], authority: X });
  });

  test('a natural member in refill receives writes beside the stand-in, and decides nothing', () => {
    expect(place([Y, X, Z], 2, roles({ [Y]: 'refill' }))).toEqual({ members: [Y, X, Z], authority: X });
  });

  test('with no trusted natural member nobody decides', () => {
    expect(place([Y, X, Z], 2, roles({ [Y]: 'out', [X]: 'refill' }))).toEqual({ members: [X, Z], authority: null });
  });
});

describe('agreement', () => {
  test('a trusted stage acknowledged but never published (an out acknowledged first) does not end the time away witnessed', () => {
    const a = sidecar('a');
    a.tryApply(1); // witnessing from now on
    const step = (role: Role, reason: 'failed' | 'reachable' | 'filled'): void => {
      a.propose(Y, role, reason);
      publish(a);
      a.tryApply(1);
    };
    step('out', 'failed');
    step('refill', 'reachable');
    expect(a.witnessedUntrustedSince(Y, 1)).toBe(1);
    // Filled: trusted(3) acknowledged while a request sent under the older view is still out on Y,
    // which then fails there. Nobody could apply trusted(3): this live sidecar never published it.
    a.propose(Y, 'trusted', 'filled');
    step('out', 'failed');
    expect(a.roleOf(Y)).toBe('out');
    expect(a.witnessedUntrustedSince(Y, 1)).toBe(1);
  });

  test('a trusted stage published may be applied elsewhere: the time away witnessed ends there', () => {
    const a = sidecar('a');
    a.tryApply(1);
    for (const [role, reason] of [['out', 'failed'], ['refill', 'reachable']] as const) {
      a.propose(Y, role, reason);
      publish(a);
      a.tryApply(1);
    }
    a.propose(Y, 'trusted', 'filled');
    publish(a); // not applied here yet, but another sidecar may have
    a.propose(Y, 'out', 'failed');
    publish(a);
    a.tryApply(1);
    expect(a.roleOf(Y)).toBe('out');
    expect(a.witnessedUntrustedSince(Y, 1)).toBeUndefined();
  });

  test('alone, a proposal applies as soon as it is published', () => {
    const a = sidecar('a');
    expect(a.propose(Y, 'out', 'failed')).toMatchObject({ to: { epoch: 1, role: 'out' } });
    expect(a.holds([Y, X, Z], 2)).toBe(true);
    expect(a.tryApply(1)).toEqual([]); // not published: the older view may still be sending
    publish(a);
    expect(a.tryApply(1)).toMatchObject([{ address: Y, to: { role: 'out' } }]);
    expect(a.roleOf(Y)).toBe('out');
    expect(a.holds([Y, X, Z], 2)).toBe(false);
  });

  test("an out applied by every live acknowledgement notes the outs every live record acknowledged before it (left-after), until a record shows it applied", () => {
    let a = sidecar('a');
    const b = sidecar('b', 0, [publish(a)]);
    a = sidecar('a', 0, [publish(b)]);
    a.propose(X, 'out', 'failed');
    a.propose(Y, 'out', 'failed');
    b.roundDone(Z, 10, 10, [publish(a)]);
    const ack = publish(b); // b acknowledged both outs, applied neither
    a.propose(Z, 'out', 'failed'); // b has not seen this one
    a.roundDone(Z, 20, 20, [ack]);
    const applied = a.tryApply(20);
    const outOfY = applied.find((c) => c.address === Y);
    expect(outOfY).toMatchObject({ to: { epoch: 1, role: 'out' }, byAll: true });
    // X's out, acknowledged by every live record, is noted; Z's, which b never saw, is not.
    expect(a.leftAfter(Y, outOfY!.to, 20)).toEqual(new Map([[X, 1]]));
    // Once b applies Y's out (it read a's record), b may have done so before acknowledging others.
    b.roundDone(Z, 30, 30, [publish(a)]);
    b.tryApply(30);
    a.roundDone(Z, 40, 40, [publish(b)]);
    expect(a.leftAfter(Y, outOfY!.to, 40)).toBeNull();
  });

  test('marks count only from writers of these epochs: this sidecar, or one whose record it has read', () => {
    const b = sidecar('b');
    const a = sidecar('a', 0, [publish(b)]);
    expect(a.hasRead('a')).toBe(true);
    expect(a.hasRead('b')).toBe(true);
    // A writer from before every sidecar restarted, never read here: its epoch may be used again.
    expect(a.hasRead('gone-before-a-started')).toBe(false);
  });

  test('a change applies only once every live record acknowledged it', () => {
    let a = sidecar('a');
    const b = sidecar('b', 0, [publish(a)]);
    a = sidecar('a', 0, [publish(b)]);
    a.propose(Y, 'out', 'failed');
    const proposal = publish(a);
    expect(a.tryApply(10)).toEqual([]); // b has not acknowledged
    // b reads it: it holds Y's keys from now, and acknowledges once published
    const acked = b.roundDone(X, 20, 20, [proposal]);
    expect(acked).toMatchObject([{ address: Y, to: { role: 'out' } }]);
    expect(b.holds([Y, X, Z], 2)).toBe(true);
    expect(b.roleOf(Y)).toBe('trusted');
    const ack = publish(b);
    a.roundDone(X, 30, 30, [ack]);
    expect(a.tryApply(30)).toMatchObject([{ address: Y }]);
    // b applies when it reads a's record that applied it
    b.roundDone(X, 40, 40, [publish(a)]);
    expect(b.tryApply(40)).toMatchObject([{ address: Y }]);
    expect(b.roleOf(Y)).toBe('out');
  });

  test("applied because a record applied it, before this sidecar read every live acknowledgement, is not byAll (no refill key comes of it)", () => {
    const [a, b, c] = [sidecar('a'), sidecar('b'), sidecar('c')];
    const [ra, rb, rc] = [publish(a), publish(b), publish(c)];
    a.roundDone(X, 0, 0, [rb, rc]);
    b.roundDone(X, 0, 0, [ra, rc]);
    c.roundDone(X, 0, 0, [ra, rb]);
    a.propose(Y, 'out', 'failed');
    const proposal = publish(a);
    b.roundDone(X, 10, 10, [proposal]);
    c.roundDone(X, 10, 10, [proposal]);
    a.roundDone(X, 20, 20, [publish(b), publish(c)]);
    expect(a.tryApply(20)).toMatchObject([{ address: Y, byAll: true }]);
    // b reads a's record, which applied it, and holds c's from before c acknowledged.
    b.roundDone(X, 30, 30, [publish(a)]);
    const [change] = b.tryApply(30);
    expect(change).toMatchObject({ address: Y, to: { role: 'out' } });
    expect(change.byAll).toBeUndefined();
  });

  test('a newcomer applies nothing before every backend it keeps had a round (it may not know its peers yet)', () => {
    const a = new TrustState('a', ALL, timing);
    a.propose(Y, 'out', 'restarted');
    publish(a);
    expect(a.tryApply(1)).toEqual([]);
    a.roundDone(X, 1, 1, []);
    expect(a.tryApply(1)).toEqual([]);
    a.roundDone(Z, 1, 1, []);
    expect(a.tryApply(1)).toMatchObject([{ address: Y }]);
  });

  test('a peer that left (a clean shutdown) is not waited for', () => {
    let a = sidecar('a');
    const b = sidecar('b', 0, [publish(a)]);
    a = sidecar('a', 0, [publish(b)]);
    a.propose(Y, 'out', 'failed');
    publish(a);
    expect(a.tryApply(1)).toEqual([]);
    for (const at of ALL) a.roundDone(at, 2, 2, [b.record(ALL, true)]);
    expect(a.tryApply(2)).toMatchObject([{ address: Y }]);
  });

  test('refilled: trusted once every other backend is; of several refilled at once, one that kept its data first, then the lowest address', () => {
    const a = sidecar('a');
    for (const at of [Y, Z]) a.propose(at, 'out', 'failed');
    publish(a);
    a.tryApply(1);
    const none = (): boolean => false;
    expect(a.mayTrust(X, none, 1)).toBe(false); // X is trusted already; Y and Z are out
    for (const at of [Y, Z]) a.propose(at, 'refill', 'reachable');
    publish(a);
    a.tryApply(1);
    expect(a.mayTrust(Y, none, 1)).toBe(true); // y:1 < z:1
    expect(a.mayTrust(Z, none, 1)).toBe(false);
    // One kept its data (no restart): it goes first, whatever its address.
    expect(a.mayTrust(Z, (b) => b === Z, 1)).toBe(true);
    expect(a.mayTrust(Y, (b) => b === Z, 1)).toBe(false);
    a.propose(Y, 'trusted', 'filled');
    publish(a);
    a.tryApply(1);
    expect(a.mayTrust(Z, none, 1)).toBe(true);
  });

  test('of several refilled at once that kept their data, the one that went out last goes first: it took the writes the others missed', () => {
    const a = sidecar('a');
    a.tryApply(0); // its view matches the cluster's: from now on it witnesses every change
    const goOut = (at: string): void => {
      a.propose(at, 'out', 'failed');
      publish(a);
      a.tryApply(1);
    };
    goOut(Y); // Y first, while X and Z were trusted
    goOut(X); // then X, while Z was
    goOut(Z); // Z last
    expect([...(a.outlastedBy(Y, 1) ?? [])].sort()).toEqual([X, Z]);
    expect([...(a.outlastedBy(X, 1) ?? [])]).toEqual([Z]);
    expect(a.outlastedBy(Z, 1)).toEqual(new Set());
    allTo(a, 'refill');
    const all = (): boolean => true;
    expect(ALL.filter((at) => a.mayTrust(at, all, 1))).toEqual([Z]);
    // What it saw goes out in its record. A live peer that saw X trusted when Z went out (its
    // writes may have reached X and not Z) adds to it: now each outlasted the other.
    const record = a.record(ALL);
    const disagreeing: TrustRecord = { ...record, id: 'c', seq: 1, outlasted: { ...record.outlasted, [Z]: { epoch: record.outlasted![Z].epoch, by: [X] } } };
    for (const at of ALL) a.roundDone(at, 1, 1, [disagreeing]);
    expect(a.outlastedBy(Z, 1)).toEqual(new Set([X]));
    expect([...(a.outlastedBy(X, 1) ?? [])]).toEqual([Z]);
    expect(ALL.filter((at) => a.mayTrust(at, all, 1))).toEqual([X]); // X and Z now unordered: the lowest address
  });

  test("took-trusted notes, which outlive their witness, add to a live witness's note", () => {
    const a = sidecar('a');
    a.tryApply(0);
    const goOut = (at: string): void => {
      a.propose(at, 'out', 'failed');
      publish(a);
      a.tryApply(1);
    };
    goOut(Y);
    goOut(X);
    goOut(Z);
    // What it leaves on the backends: each one it saw take another's writes trusted, once per time away.
    expect(a.trustedTakers().map(([away, , by]) => `${by} took ${away}`).sort()).toEqual([`${X} took ${Y}`, `${Z} took ${X}`, `${Z} took ${Y}`]);
    allTo(a, 'refill');
    const all = (): boolean => true;
    expect(ALL.filter((at) => a.mayTrust(at, all, 1))).toEqual([Z]);
    // A peer now gone saw X trusted when Z went out (its view lagged) and left that note on X:
    // each outlasted the other, as with a live peer's record.
    const noted = (b: string): ReadonlySet<string> | undefined => (b === Z ? new Set([X]) : undefined);
    expect(ALL.filter((at) => a.mayTrust(at, all, 1, () => undefined, noted))).toEqual([X]);
  });

  test('a took-trusted note on a backend that came back empty tells nothing of the order of those that kept their data', () => {
    const a = sidecar('a'); // witnessing none of it: every order below comes from marks and notes
    allTo(a, 'out');
    allTo(a, 'refill');
    expect(ALL.map((at) => a.outlastedBy(at, 1))).toEqual([null, null, null]);
    const kept = (b: string): boolean => b !== Z; // Z came back empty: X and Y are the candidates
    const marked = (b: string): ReadonlyMap<string, number | undefined> | undefined => (b === Y ? new Map([[Z, undefined]]) : undefined);
    // Y is known (only Z outlasted it); nothing is known of X's time away: Y goes first.
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1, marked))).toEqual([Y]);
    const noted = (b: string): ReadonlySet<string> | undefined => (b === X ? new Set([Z]) : undefined);
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1, marked, noted))).toEqual([Y]);
  });

  test('a backend in refill when another goes out, or entering refill while it is out, outlasted it: it took the writes and deletes the other missed', () => {
    const a = sidecar('a');
    a.tryApply(0); // witnessing from now on
    /** Proposes these changes and applies them together (in one batch: no request runs between them). */
    const step = (changes: Array<[string, Role]>): void => {
      for (const [at, role] of changes) a.propose(at, role, role === 'out' ? 'failed' : 'reachable');
      publish(a);
      a.tryApply(1);
    };
    step([[Y, 'out'], [Z, 'out']]); // together: neither outlasted the other, X both
    step([[Y, 'refill'], [Z, 'refill']]);
    step([[Y, 'out']]); // Y again, while Z, in refill, takes the writes and deletes of its keys
    step([[Y, 'refill']]);
    expect([...(a.outlastedBy(Y, 1) ?? [])].sort()).toEqual([X, Z]);
    expect([...(a.outlastedBy(Z, 1) ?? [])]).toEqual([X]);
    const all = (): boolean => true;
    expect(ALL.filter((at) => a.mayTrust(at, all, 1))).toEqual([Z]);
  });

  test('of two that outlasted each other, the one whose missed writes are in a refill still going on goes first', () => {
    const a = sidecar('a');
    a.tryApply(0);
    const step = (changes: Array<[string, Role]>, unpublished: Array<[string, Role]> = []): void => {
      for (const [at, role] of changes) a.propose(at, role, role === 'out' ? 'failed' : 'reachable');
      publish(a);
      for (const [at, role] of unpublished) a.propose(at, role, 'failed');
      a.tryApply(1);
    };
    step([[Y, 'out']], [[X, 'out']]); // Y goes out while X is going out too: only Z outlasts it
    step([[Y, 'refill']]); // X's out applies with Y's refill: Y, in refill, takes what X misses
    expect([...(a.outlastedBy(X, 1) ?? [])].sort()).toEqual([Y, Z]);
    step([[Z, 'out']]); // Z restarts: it comes back empty
    step([[Y, 'out']]); // Y's refill ends: what it took while X was out is on it alone
    step([[X, 'refill']]); // X, in refill, takes what Y misses; its fill will take them from there
    expect([...(a.outlastedBy(Y, 1) ?? [])].sort()).toEqual([X, Z]);
    step([[Y, 'refill'], [Z, 'refill']]);
    const kept = (b: string): boolean => b !== Z;
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1))).toEqual([Y]);
  });

  test('of several that outlasted each other, one outlasted only by refills that ended goes before one outlasted by a trusted backend', () => {
    const a = sidecar('a');
    a.tryApply(0);
    const step = (changes: Array<[string, Role]>): void => {
      for (const [at, role] of changes) a.propose(at, role, role === 'out' ? 'failed' : 'reachable');
      publish(a);
      a.tryApply(1);
    };
    step([[X, 'out']]); // X misses what Y and Z, trusted, take (acknowledged writes among them)
    step([[X, 'refill']]);
    step([[Y, 'out'], [Z, 'out']]); // X, in refill, takes what they miss; none of it is acknowledged
    step([[X, 'out']]); // X's refill ends
    step([[X, 'refill'], [Y, 'refill'], [Z, 'refill']]);
    expect([...(a.outlastedBy(X, 1) ?? [])].sort()).toEqual([Y, Z]);
    expect([...(a.outlastedBy(Y, 1) ?? [])]).toEqual([X]);
    const all = (): boolean => true;
    expect(ALL.filter((at) => a.mayTrust(at, all, 1))).toEqual([Y]);
  });

  test('one whose time away no live witness saw goes after one whose missed writes are in a refill still going on', () => {
    const a = sidecar('a'); // not witnessing yet: its view has not matched the cluster's
    const step = (changes: Array<[string, Role]>): void => {
      for (const [at, role] of changes) a.propose(at, role, role === 'out' ? 'failed' : 'reachable');
      publish(a);
      a.tryApply(1);
    };
    step([[X, 'out']]); // X goes out before anyone witnesses: nobody knows what it missed
    a.tryApply(1); // witnessing from now on
    expect(a.outlastedBy(X, 1)).toBeNull();
    step([[X, 'refill']]);
    step([[Y, 'out'], [Z, 'out']]); // X, in refill, takes what they miss
    expect([...(a.outlastedBy(Z, 1) ?? [])]).toEqual([X]);
    step([[Y, 'refill'], [Z, 'refill']]);
    // Y restarted. Z's fill takes from X what X took in its refill; X may lack what Z took trusted.
    const kept = (b: string): boolean => b !== Y;
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1))).toEqual([Z]);
  });

  test('with no live witness, a stand-in mark naming the refill it was written in counts as taking the writes only in refill, while that refill or the one after its next out lasts', () => {
    const a = sidecar('a'); // not witnessing: every time away is told by the marks alone
    allTo(a, 'out');
    allTo(a, 'refill');
    expect(a.outlastedBy(X, 1)).toBeNull();
    const inRefill = a.stageOf(X).epoch;
    // X's mark on Y says Y took X's writes trusted; Y's mark on X that X took Y's only in the
    // refill X is still in (X's fill takes those from X: refill sources). Z restarted.
    const marks = (xOnY: number | undefined) => (c: string) =>
      c === X ? new Map([[Y, undefined]]) : c === Y ? new Map([[X, xOnY]]) : undefined;
    const kept = (b: string): boolean => b !== Z;
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1, marks(inRefill)))).toEqual([Y]);
    // Read as plain marks, each outlasted the other: the lowest address, X, which missed what Y took trusted.
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1, marks(undefined)))).toEqual([X]);
    // A mark of the refill before its last out (two epochs back: refill, out, refill): no trusted
    // stage fits in between, so X took Y's writes only in refills, as a witness would note.
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1, marks(inRefill - 2)))).toEqual([Y]);
    // Three or more back: X may have been trusted since (refill, trusted, out, refill), and taken Y's writes so: plain.
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1, marks(inRefill - 3)))).toEqual([X]);
    expect(ALL.filter((at) => a.mayTrust(at, kept, 1, marks(inRefill - 4)))).toEqual([X]);
  });

  test('each outlasted and all known: the lowest address among the sources of the graph of who outlasted whom, by pass 0, then pass 1, never pass 2', () => {
    const a = sidecar('a'); // not witnessing: every time away is told by the marks alone
    allTo(a, 'out');
    allTo(a, 'refill');
    const inRefill = a.stageOf(X).epoch;
    const all = (): boolean => true;
    /** Per backend, who outlasted it, each with the refill named by its mark (undefined: trusted). */
    const marks = (m: Record<string, Record<string, number | undefined>>) => (c: string) => new Map(Object.entries(m[c] ?? {}));
    // Y and Z each took writes trusted while the other was out (they left moments apart), and both
    // while X was out: X missed what they took and took nothing they missed. Pass 0's sources: Y and Z.
    const cycle = { [X]: { [Y]: undefined, [Z]: undefined }, [Y]: { [Z]: undefined }, [Z]: { [Y]: undefined } };
    expect(ALL.filter((at) => a.mayTrust(at, all, 1, marks(cycle)))).toEqual([Y]);
    // X also took what Y and Z missed, in the refill it is still in (their fills took those from it):
    // pass 0's graph is one cycle, pass 1's sources are Y and Z.
    const inX = (e: number) => ({ [X]: cycle[X], [Y]: { ...cycle[Y], [X]: e }, [Z]: { ...cycle[Z], [X]: e } });
    expect(ALL.filter((at) => a.mayTrust(at, all, 1, marks(inX(inRefill))))).toEqual([Y]);
    // In a refill X has left since: no fill took those writes, and X may hold the only copy of one
    // (its pass 2 sources, Y and Z, are not read). The lowest address, X.
    expect(ALL.filter((at) => a.mayTrust(at, all, 1, marks(inX(inRefill - 2))))).toEqual([X]);
    // One whose time away nothing tells (no mark): as before, the lowest such one.
    expect(ALL.filter((at) => a.mayTrust(at, all, 1, (c) => (c === Z ? undefined : marks(cycle)(c))))).toEqual([Z]);
  });

  test('sourcesOf: the nodes that no node outside their cycle reaches', () => {
    const edges = (pairs: string[]) => (c: string, d: string) => pairs.includes(d + c); // "dc": d reaches c
    expect(sourcesOf(['a', 'b', 'c'], edges(['ab', 'ba', 'bc', 'ca']))).toEqual(['a', 'b', 'c']);
    expect(sourcesOf(['a', 'b', 'c'], edges(['ba', 'ca', 'bc', 'cb']))).toEqual(['b', 'c']);
    expect(sourcesOf(['a', 'b', 'c', 'd'], edges(['ab', 'bc', 'cb', 'da']))).toEqual(['d']);
    expect(sourcesOf(['a', 'b', 'c'], edges(['ab']))).toEqual(['a', 'c']);
    expect(sourcesOf(['a', 'b', 'c'], edges([]))).toEqual(['a', 'b', 'c']);
  });

  test('one acknowledged on its way to a refill (its out acknowledged, not applied here) when another goes out took what that one missed only in the refill', () => {
    const a = sidecar('a');
    const b = sidecar('b', 0, [publish(a)]);
    roundsAt(a, 0, [publish(b)]);
    a.tryApply(0); // both witnessing from now on
    b.tryApply(0);
    a.propose(Y, 'out', 'failed'); // a holds Y's keys from now: it sends Y nothing
    roundsAt(b, 10, [publish(a)]);
    publish(b);
    expect(b.tryApply(10)).toMatchObject([{ address: Y, to: { role: 'out' } }]); // while Z was trusted
    b.propose(Y, 'refill', 'reachable');
    // a acknowledges Y's refill before it applied Y's out (its older view still draining), and Z fails.
    roundsAt(a, 20, [publish(b)]);
    expect([a.roleOf(Y), a.seenRoleOf(Y)]).toEqual(['trusted', 'refill']);
    const zOut = a.propose(Z, 'out', 'failed')!.to;
    a.markPublished(new Map([[Z, zOut]]));
    roundsAt(b, 30, [a.record(ALL)]);
    publish(b);
    expect(b.tryApply(30)).toMatchObject([{ address: Z, to: { role: 'out' } }]);
    roundsAt(a, 40, [publish(b)]);
    // Z's out applies at a with Y applied trusted there: Y takes writes from a only once its refill applies.
    expect(a.tryApply(40)).toMatchObject([{ address: Z, to: { role: 'out' } }]);
    publish(a);
    roundsAt(b, 50, [publish(a)]);
    expect(b.tryApply(50)).toMatchObject([{ address: Y, to: { role: 'refill' } }]);
    roundsAt(a, 60, [publish(b)]);
    expect(a.tryApply(60)).toMatchObject([{ address: Y, to: { role: 'refill' } }]);
    a.propose(Z, 'refill', 'reachable');
    roundsAt(b, 70, [publish(a)]);
    publish(b);
    b.tryApply(70);
    roundsAt(a, 80, [publish(b)]);
    expect(a.tryApply(80)).toMatchObject([{ address: Z, to: { role: 'refill' } }]);
    // Z, trusted, took what Y missed; Y took what Z missed in the refill it is still in (Z's
    // fill takes it from there): Z goes first, by either sidecar's view.
    expect([...(a.outlastedBy(Y, 80) ?? [])].sort()).toEqual([X, Z]);
    expect([...(a.outlastedBy(Z, 80) ?? [])].sort()).toEqual([X, Y]);
    const all = (): boolean => true;
    expect(ALL.filter((c) => a.mayTrust(c, all, 80))).toEqual([Z]);
    roundsAt(b, 90, [publish(a)]);
    expect(ALL.filter((c) => b.mayTrust(c, all, 90))).toEqual([Z]);
  });

  test('a sidecar that applied trusted straight to a later out (out, refill, out again acknowledged meanwhile) dates the departure at the first out: no trusted stage fits between', () => {
    const a = sidecar('a');
    const b = sidecar('b', 0, [publish(a)]);
    roundsAt(a, 0, [publish(b)]);
    a.tryApply(0); // witnessing from now on
    const trustedEpoch = a.stageOf(Y).epoch;
    a.propose(Y, 'out', 'failed'); // out(e+1): b acknowledges and applies it, and proposes its refill
    roundsAt(b, 10, [publish(a)]);
    publish(b);
    expect(b.tryApply(30)).toMatchObject([{ address: Y, to: { role: 'out' } }]);
    expect(b.propose(Y, 'refill', 'reachable')).toMatchObject({ to: { role: 'refill' } });
    // a acknowledges that refill before it applied the out, and fails a request on Y again.
    roundsAt(a, 40, [publish(b)]);
    expect(a.roleOf(Y)).toBe('trusted');
    expect(a.propose(Y, 'out', 'failed')).toMatchObject({ to: { epoch: trustedEpoch + 3, role: 'out' } });
    roundsAt(b, 50, [publish(a)]);
    roundsAt(a, 60, [publish(b)]);
    expect(a.tryApply(60)).toMatchObject([{ address: Y, from: { role: 'trusted' }, to: { epoch: trustedEpoch + 3, role: 'out' } }]);
    // Y was trusted at e and never since (the stages were out, refill, out): it left at e+1, where
    // its stand-in keys mark the writes it missed (those of e+3 came later, over some of them), and
    // the refill keys written while it was trusted at e still order its items.
    expect(a.untrustedSince(Y, 60)).toBe(trustedEpoch + 1);
    expect(leftOnceSince(trustedEpoch, a.untrustedSince(Y, 60))).toBe(true);
    expect(leftTrusted({ epoch: trustedEpoch, role: 'trusted' }, trustedEpoch + 3, undefined)).toBe(trustedEpoch + 1);
    // One that published a later trusted stage (others may have applied it), or further on, no earlier than the out.
    expect(leftTrusted({ epoch: trustedEpoch, role: 'trusted' }, trustedEpoch + 3, { epoch: trustedEpoch + 3, role: 'trusted' })).toBe(trustedEpoch + 3);
    expect(leftTrusted({ epoch: trustedEpoch, role: 'trusted' }, trustedEpoch + 4, undefined)).toBe(trustedEpoch + 4);
    // A trusted stage in between is at least e+3, and leaving it at least e+4.
    expect(leftOnceSince(trustedEpoch, trustedEpoch + 1)).toBe(true);
    expect(leftOnceSince(trustedEpoch, trustedEpoch + 4)).toBe(false);
    expect(leftOnceSince(trustedEpoch, trustedEpoch)).toBe(false);
  });

  test('a sidecar whose record stood still for D is not waited for; one that writes is', () => {
    let a = sidecar('a');
    const b = sidecar('b', 0, [publish(a)]);
    const bRecord = publish(b);
    a = sidecar('a', 0, [bRecord]);
    a.propose(Y, 'out', 'failed');
    publish(a);
    // b keeps writing (seq grows) but has not acknowledged: still waited for
    const round = (t: number, r: TrustRecord): void => {
      for (const at of ALL) a.roundDone(at, t, t, [r]);
    };
    round(900, publish(b));
    expect(a.tryApply(900 + timing.silentMs - 1)).toEqual([]);
    // b falls silent: after D on a's clock from its last change, a goes on
    round(900 + timing.silentMs - 500, bRecord);
    expect(a.tryApply(900 + timing.silentMs - 1)).toEqual([]);
    expect(a.tryApply(900 + timing.silentMs)).toMatchObject([{ address: Y }]);
  });

  test('a peer whose record stood still for FORGET_PEER_AFTER_MS is forgotten; one read again counts as new', () => {
    const b = publish(sidecar('b'));
    const a = sidecar('a', 0, [b]);
    expect(a.peerReaches('b', X)).toBe(true);
    roundsAt(a, FORGET_PEER_AFTER_MS - 1, []);
    expect(a.peerReaches('b', X)).toBe(true);
    expect(a.silentPeers(FORGET_PEER_AFTER_MS - 1)).toEqual(['b']);
    roundsAt(a, FORGET_PEER_AFTER_MS, []);
    expect(a.peerReaches('b', X)).toBe(false);
    expect(a.liveIds(FORGET_PEER_AFTER_MS)).toEqual(['a']);
    // Its record read again (it wrote within the record's expiry): live, and told silent again later.
    roundsAt(a, FORGET_PEER_AFTER_MS + 10, [b]);
    expect(a.liveIds(FORGET_PEER_AFTER_MS + 10)).toEqual(['a', 'b']);
    expect(a.silentPeers(FORGET_PEER_AFTER_MS + 10 + timing.silentMs)).toEqual(['b']);
  });

  test('the view is stale once a backend not out had no round in the lease', () => {
    const a = sidecar('a', 0);
    expect(a.fresh(timing.leaseMs - 1)).toBe(true);
    expect(a.fresh(timing.leaseMs)).toBe(false);
    a.roundDone(X, 900, 950, []);
    a.roundDone(Z, 900, 950, []);
    expect(a.fresh(timing.leaseMs + 100)).toBe(false); // Y: none since 0
    a.propose(Y, 'out', 'failed');
    publish(a);
    a.tryApply(timing.leaseMs + 100);
    expect(a.fresh(timing.leaseMs + 100)).toBe(true); // Y is out: not needed
  });

  test("a record names the peers live as of its writer's latest round: a stall of its own drops none, a peer it stops reading goes", () => {
    const b = sidecar('b', 0);
    const a = sidecar('a', 0, [b.record(ALL)]);
    // a's event loop stalls past D: its first record after it still names b (it has read nothing since).
    expect(a.record(ALL).knows).toEqual(['b']);
    // a's rounds go on, and none finds b's record written again: b goes silent, and unnamed.
    roundsAt(a, timing.silentMs, []);
    expect(a.record(ALL).knows).toEqual([]);
  });

  test('a newcomer acts only once every live peer names it: until then a peer would agree without it', () => {
    const a = sidecar('a', 0);
    expect(a.fresh(5)).toBe(true); // alone: nobody to be named by
    // b joins: its rounds read a's record, which a wrote before it knew b.
    const b = sidecar('b', 10, [a.record(ALL)]);
    expect(b.fresh(20)).toBe(false);
    // Meanwhile a agrees with nobody but itself: b's acknowledgement was never asked for.
    a.propose(Y, 'out', 'failed');
    publish(a);
    expect(a.tryApply(20)).toMatchObject([{ address: Y }]);
    // a reads b's record: from then on a waits for b, and says so; b, reading that, may act.
    roundsAt(a, 30, [b.record(ALL)]);
    roundsAt(b, 40, [a.record(ALL)]);
    expect(b.fresh(50)).toBe(true);
    // What a applied alone, b adopts from the same record: it holds Y's keys until it applies it.
    expect(b.seenRoleOf(Y)).toBe('out');
    publish(b);
    expect(b.tryApply(50)).toMatchObject([{ address: Y, to: { role: 'out' } }]);
    // A newcomer's first record, written before it read anyone, names nobody: a sidecar already
    // counted goes on acting (it is the newcomer that waits, above).
    roundsAt(a, 45, [new TrustState('d', ALL, timing).record(ALL)]);
    expect(a.fresh(50)).toBe(true);
    // A peer that falls silent (for D) is no longer waited for, named or not.
    const c = sidecar('c', 60, [a.record(ALL)]);
    expect(c.fresh(70)).toBe(false);
    roundsAt(c, 60 + timing.silentMs, []);
    expect(c.fresh(60 + timing.silentMs)).toBe(true);
  });

  test('transitions: out only from trusted or refill, refill only from out, trusted only from refill', () => {
    const a = sidecar('a');
    expect(a.propose(Y, 'refill', 'reachable')).toBeNull();
    expect(a.propose(Y, 'trusted', 'filled')).toBeNull();
    a.propose(Y, 'out', 'failed');
    publish(a);
    a.tryApply(1);
    expect(a.propose(Y, 'out', 'failed')).toBeNull();
    expect(a.propose(Y, 'refill', 'reachable')).toMatchObject({ to: { epoch: 2, role: 'refill' } });
    publish(a);
    a.tryApply(1);
    expect(a.propose(Y, 'trusted', 'filled')).toMatchObject({ to: { epoch: 3, role: 'trusted' } });
    // a failure during the agreement on trust goes past it
    expect(a.propose(Y, 'out', 'failed')).toMatchObject({ to: { epoch: 4, role: 'out' } });
  });

  test('a newcomer that found a backend restarted, then adopts a newer trusted stage from a record, still puts it out', () => {
    const old = sidecar('old');
    old.propose(Y, 'out', 'failed');
    publish(old);
    old.tryApply(0);
    old.propose(Y, 'refill', 'reachable');
    publish(old);
    old.tryApply(0);
    old.propose(Y, 'trusted', 'filled');
    const record = publish(old); // Y trusted(3) in its record; then it died and Y restarted
    const a = new TrustState('new', ALL, timing);
    a.propose(Y, 'out', 'restarted'); // its survey: Y's incarnation key is gone
    for (const at of ALL) a.roundDone(at, 0, 0, [record]); // adopts trusted(3), newer than its out(1)
    expect(a.seenRoleOf(Y)).toBe('trusted');
    // its round finds the incarnation key still gone: the out goes past the adopted stage
    expect(a.propose(Y, 'out', 'restarted')).toMatchObject({ to: { epoch: 4, role: 'out' } });
  });
});
