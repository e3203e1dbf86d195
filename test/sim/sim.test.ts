// The deterministic simulation (run.ts) of N sidecars, their clients and the
// memcached backends under faults. The trust protocol must keep every invariant;
// without it (each sidecar routing by its own view) the same harness finds each
// kind of violation, which shows the checks can fail. A failing seed prints its
// report: the violation, how to replay it, and the events before it.

import { describe, expect, test } from 'vitest';
import type { ViolationKind } from './checker';
import type { FaultKind } from './faults';
import { report, shapeOf, simulate } from './run';

const log = (text: string): void => console.log(text);

describe('the trust protocol', () => {
  const SEEDS = [1, 2, 3, 4];
  const STEPS = 250_000;
  // Backends killed and restarted empty, sidecars stalled, dying (also in the middle of a
  // refill) and arriving, several at once. Path faults and SIGSTOP bring a backend back with
  // its data, stale in places: with several backends away at once through those, the
  // simulation still finds rare violations (docs/testing.md, scripts/sim.sh), so they come
  // below with one backend in trouble at a time.
  const KINDS: FaultKind[] = ['kill', 'restart', 'stall', 'death', 'death-in-refill'];

  test.each(SEEDS)(`seed %i: every invariant holds for ${STEPS} steps under crashes, restarts and sidecar faults`, async (seed) => {
    const result = await simulate({ seed, ...shapeOf(seed), steps: STEPS, faults: { kinds: KINDS }, log });
    expect(result.counts).toEqual({});
    expect(result.steps).toBe(STEPS);
  });

  // Every kind of fault, path faults and SIGSTOP included, with trouble on one backend at a
  // time (faults.ts, oneBackend): the loss the product promises to survive.
  test.each(SEEDS)(`seed %i: every invariant holds for ${STEPS} steps under every kind of fault, one backend at a time`, async (seed) => {
    const result = await simulate({ seed, ...shapeOf(seed), steps: STEPS, faults: { oneBackend: true }, log });
    expect(result.counts).toEqual({});
    expect(result.steps).toBe(STEPS);
  });

  // Seeds of scripts/sim.sh (every kind of fault) whose violation had a cause now fixed, each
  // replayed up to just past its violation's step, with the request timeout and the rounds it
  // was found with (by default 500 ms and no quicker rounds after an acknowledgement: other
  // timing is another run).
  const FOUND_AT = { requestTimeoutMs: 500, quickRounds: 1 };
  const PATH_KINDS: FaultKind[] = ['freeze', 'one-way', 'delay', 'reset', 'refuse', 'sigstop', 'stall', 'death'];
  const REPLAYS: Array<{ seed: number; steps: number; rule: string; timing?: typeof FOUND_AT; kinds?: FaultKind[] }> = [
    // s2.0's pecl lock incr decided on b3; its copy to b2 (SIGSTOPped) failed, and the request waited
    // out b2's out, during which b1 was filled and trusted. Back under that view, its follow-up still
    // took b3 for the authority: it copied b3's miss over the lock s4.0 had just taken on b1, and
    // s4.0's add then got it again (a lock granted twice at 7.24 s).
    { seed: 1302, steps: 95_000, rule: 'a write back from a hand-over converges on the authority of the newer view' },
    // b1 and b2 (a key's natural members) away at overlapping times, b2 took its
    // writes trusted while b1 was out; b2 entered refill while the sidecar read which backends in refill
    // kept their data, and b1 went first on that read, which missed b2 (a stale value read at 62.85 s).
    { seed: 501, steps: 190_000, rule: 'the one that outlasted goes first even if it entered refill during the reads' },
    // b1 out, then b3 (trusted while b1 was out: it took a delete of sess:3 b1
    // missed). s0 applied b3's out while it had b2 applied trusted and acknowledged on its way to a
    // refill, and noted b2 as having taken b3's writes trusted: b1 went before b3 (a deleted key served at 8.95 s).
    { seed: 699, steps: 70_000, rule: 'one acknowledged on its way to a refill outlasted another only in that refill' },
    // b1 (a natural member of sess:6) went out while b0, its stand-in, was in refill
    // with its trust acknowledged, not applied; b0 took sess:6's writes, then every backend was away at
    // once. b0's stand-in key of b1's outage said `away`, so its copy was no source for b1's refill, and
    // b1's older copy was kept and served (a stale read at 18.17 s).
    { seed: 841, steps: 80_000, rule: 'a stand-in in refill when the natural member left is a source for the writes it took' },
    // b0 out, then b1 (restarted) and b2 (SIGSTOPped) away; b3 went out last,
    // while b1 and b2 were in refill, and every sidecar that saw the outages went. By the stand-in
    // keys b3 outlasted b0 and b2 (trusted when they left) and b2 outlasted b3 (in refill when it
    // left): each was outlasted, and b0, the lowest address, went first without key:7, written while
    // it was out; its miss then deleted the others' copies (a lost write at 18.02 s). b2 took b3's
    // writes only in the refill it was still in.
    { seed: 455, steps: 45_000, rule: 'a stand-in mark written in refill counts as taking the writes only in that refill' },
    // b0 out, b1 trusted took its writes; b1 went out while b0 was in refill, after
    // the sidecars that saw b0 leave had gone. By the stand-in keys each outlasted the other, and b0, the
    // lowest address, was trusted first with an older sess:0, copied to b1 (a stale read at 34.28 s).
    { seed: 506, steps: 52_000, rule: 'one outlasted only by a refill still going on goes first by the marks too' },
    // b2, in refill, was filled and proposed trusted while a write sent to it in
    // that refill was still on a frozen path; the write failed there and the out came before any
    // sidecar published the trusted stage. The witness had dropped b2's time away on acknowledging it,
    // so the stand-in's only copy of the write was read as older than the outage (a stale read at 29.64 s).
    { seed: 884, steps: 60_000, rule: 'a trusted stage never published ends no witnessed time away' },
    // s1.2 arrived while b0 had just restarted (empty) and its paths to b1 and b2
    // failed; its survey found no incarnation key on b0 and no answer from the others, took the
    // cluster for new, applied its own outs of b1 and b2 alone (it read no record: b0 held none) and
    // read sess:5 from b0, the only trusted backend by that view (a lost write at 97.36 s).
    { seed: 1006, steps: 152_000, rule: 'a survey that found no key where others did not answer waits for their rounds' },
    // b0 in refill (a path reset), sess:5 written since. s1.0's delete reached b0 and the
    // stand-in b2, and froze on its way to b3, the source; the filler read b0's miss and b3's item
    // and added it back to b0. b3 went out, b0 was trusted and answered for the key, and the
    // delete's convergence copied the item to b2 (a deleted key served at 57.24 s).
    { seed: 139, steps: 146_000, rule: 'a fill copies nothing the target took in its refill', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // b3 out at epoch 8, in refill, out again at 10 while b2 was SIGSTOPped: b2 never got b3's
    // stand-in key of epoch 10, only that of 8, which said b2 took b3's writes (sess:2's latest
    // among them). Every sidecar that saw it went; reading the keys of the current out epoch alone,
    // nothing said b2 outlasted b3, b3 went first without sess:2, and its miss deleted b2's copy
    // (a lost write at 80.10 s).
    // b1 took b2's writes only in refill(30), went out (31) and into refill(32); every sidecar that
    // saw it went. By the stand-in keys each outlasted the other: b2's mark of b1 names refill 30,
    // which b1 had left, and counted as taken trusted. b1, the lower address, went first with an
    // older key:1 and its fill overwrote b2's newer one (a stale read at 118.15 s). No trusted stage
    // fits between refill 30 and 32.
    { seed: 561, steps: 245_000, rule: 'a mark naming a refill two epochs back still says taken only in refill', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // The same shape on a natural member: sess:2's newest write on b2 (in refill(10), left) and the
    // stand-in b0 (trusted, restarted empty); b1 went first with the older copy (a stale read at 61.92 s).
    { seed: 1064, steps: 203_000, rule: 'the same, the newest write on the other natural member only', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    { seed: 525, steps: 205_000, rule: 'who outlasted a backend is read from the stand-in keys of its whole time away', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    { seed: 725, steps: 247_000, rule: 'a delete that removed a copy of a half-landed set answers DELETED', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // Eight sidecars started at once on fresh memcached. s1.0 read b1's roster before the others'
    // ids were on it (the others' `add` of the roster lost to its own), knew no peer, and applied
    // b1 out alone 0.8 ms after its path to b1 was reset; s0.0, which knew no peer either, still
    // took sess:4.lock on b1 while s1.0 took it on b0 (a lock granted twice at 0.05 s).
    { seed: 125, steps: 2_000, rule: 'a sidecar knows its peers only from a roster read that lists it', timing: { requestTimeoutMs: 300, quickRounds: 3 }, kinds: PATH_KINDS },
    // The same race under crash faults: five sidecars at once, a lock granted twice at 0.16 s.
    { seed: 220, steps: 2_000, rule: 'the same, five sidecars and a restart', timing: { requestTimeoutMs: 300, quickRounds: 3 }, kinds: KINDS },
    // b0 took sess:6's s3.0/c1#766 in a refill of its own (2) and left it (out 3); b2, in refill(5)
    // all that time, took the newer writes, left it (out 6) with the newest, and b1, trusted, restarted
    // empty. b0's copy was over its refill-began key of 2, so not held before it left, and b0 went
    // first with it (a stale read at 19.13 s). b2's stand-in key of 6 on b0 dates b0's copy before b2 left.
    { seed: 1622, steps: 100_000, rule: "an earlier refill's writes replace a copy written before that refill ended", timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // Four sidecars started at once and s3.0 died 0.04 s later. The other three, waiting for its first
    // record to fall silent, acknowledged b0's out (0.66 s) while none was fresh, so nobody wrote its
    // stand-in keys. sess:7's write (4.95 s) went to b1 and the stand-in b2; b1 was killed, b0 came
    // back (SIGSTOPped, its data kept) and was filled without it: b2's copy, over no key, was no
    // source, and was deleted (a lost write at 15.56 s). The keys now go on once a view is fresh.
    { seed: 348, steps: 80_000, rule: 'an out acknowledged while no view was fresh is marked before anyone serves', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // b2 (a natural member of sess:4) SIGSTOPped at 2.44 s with s2.0's set of sess:4 on its way; the
    // set was acknowledged through b1 once b2 was out. A delete (3.47 s) reached b1 and the stand-in
    // b0; b1 was killed (3.53 s), and the hung set landed on b2 as it resumed (3.56 s). No trusted
    // natural member was left, b0's miss said nothing of b2's copy, and b2 was trusted with it (a
    // deleted key served at 11.10 s). b0's delete record now proves the copy deleted.
    { seed: 9, steps: 180_000, rule: "a stand-in's delete record proves a natural member's older copy deleted", timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // The same shape with four backends (a deleted key served at 7.21 s).
    { seed: 2150, steps: 115_000, rule: 'the same, four backends', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // sess:6's natural members b1 and b2, its first stand-in b0. b2 went out at 7 (its stand-in key on
    // b0 at CAS 1834), and s1.0's write took b1 and b0 (1842). s0.1 applied b2 from trusted(6)
    // straight to out(9) and dated its departure there, at a key written after the write (1845). b1
    // restarted empty; b2's reconcile took b0's copy for older than b2's departure and kept its own
    // older one (a stale read at 51.34 s). Nothing but out(7) follows trusted(6), and no trusted stage
    // fits before out(9): b2 left at 7.
    { seed: 1042, steps: 152_000, rule: 'a witness that skipped stages dates the departure at the first out after trusted', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // The same: three witnesses dated b2's departure at 7, three at 9, and the latest counted (a stale read at 22.59 s).
    { seed: 1102, steps: 190_000, rule: 'the same, six sidecars', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // sess:5's natural members b0 and b2, b1 a stand-in. b1 went out, then b0 (SIGSTOPped): b0's stand-in
    // key on b1 said `away`. b1 entered refill(11) and took s1.2's newer write with b2; b2 restarted
    // empty and b1 left that refill. b0 went first with its older copy: nothing said b1 had taken what
    // b0 missed, so Earlier refills did not apply (a stale read at 67.04 s). The key now becomes
    // `trusted r11 joined` before b1's refill is acknowledged.
    { seed: 282, steps: 118_000, rule: 'a backend entering refill while another is away marks that it takes its writes', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // The same shape (stale reads at 15.05 and 13.54 s).
    { seed: 1325, steps: 131_000, rule: 'the same, six sidecars', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    { seed: 2163, steps: 135_000, rule: 'the same, seven sidecars', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // key:15's natural members b1 and b0, then the stand-ins b3 and b2. b3 went away holding the copy
    // written at 2.68 s; the delete (8.94 s) reached b0, b1 and b2. b3 was filled first (10.94 s) and
    // kept its copy: no trusted natural member was left, and b2's miss proved nothing; the natural
    // members, in refill, then took it from b3 (a deleted key served at 15.90 s). b2, in the key's
    // placement without a break since before the delete, holds its record.
    { seed: 145, steps: 223_000, rule: 'a later stand-in there all along proves, by its delete record, a copy deleted', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // Every backend in refill. s0.1's fill of b2 read sess:1 on b1, the source of its latest write,
    // while its own view had just turned fresh and its late stand-in keys were being written: the
    // read failed, and the run went on to Earlier refills, which copied b0's older #210 onto b2.
    // b3's fill then took that copy as a write b2 took in its refill, over b3's newer #380 (a stale
    // read at 21.50 s). A failed read now fails the key, which is tried again.
    { seed: 368, steps: 116_000, rule: 'a fill copies nothing by Earlier refills over a read that failed', timing: { requestTimeoutMs: 300, quickRounds: 3 }, kinds: PATH_KINDS },
    // sess:8's natural members b2 and b3. s1.0 acknowledged an out(1) of b3, added its stand-in keys and
    // died before publishing it: that out applied nowhere. b3's later out got epoch 1 again, and those
    // keys stayed (the first add stays), marking a moment long before the departure. A stand-in's
    // delete record of sess:8 from between was read as a delete since, and a reconcile dropped the
    // copy of s3.1's write at 20.50 s (a lost write at 28.80 s). An acknowledger now replaces a
    // stand-in key whose writer is no live sidecar.
    { seed: 2058, steps: 195_000, rule: 'a stand-in key left by a sidecar that died before publishing is replaced', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // A backend left while another's refill was acknowledged and not yet applied by the sidecars that
    // wrote its stand-in keys: the key on the one in refill said `away`, though it took the departed
    // one's writes from the refill's application on, and its copies were no source (a stale read at
    // 17.27 s). The key now becomes `joined` as each sidecar applies the refill.
    { seed: 1192, steps: 75_000, rule: 'a refill applied while another is away marks that it takes its writes', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // sess:13's natural members b0 and b1, b1 in refill, b2 (the first stand-in) in refill too. A set
    // reached all three; s2.0's delete reached b0 and b1, then s2.0 stalled before its send to b2,
    // and b0 went out. b1's reconcile found no trusted member and took b2's item as a refill source's
    // latest write, though b1 had taken that write and the delete after it; b0's fill then took it
    // from b1 (a deleted key served at 11.77 s). Refill keys now also go on backends in refill, and
    // a refill source's item over the target's key there is not copied.
    { seed: 683, steps: 145_000, rule: "a fill takes nothing from a refill source that its target took in its own refill", timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // key:1's natural members b1 and b2 away; #187 on b0 alone (a trusted stand-in). b2 came back
    // empty and was filled from b0, over b1's refill key on it. b1's fill read b0 and failed (its view
    // stale a moment), then skipped b2's copy as a write b1 took in its refill, and went trusted without
    // the key (a lost write at 17.57 s). A failed read now fails that key, which is read again.
    { seed: 2126, steps: 200_000, rule: 'a refill source skipped as taken by the target fails the key when another read failed', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // key:13's natural members b1 and b2 away (b2 restarted empty since); the latest write, at 14.49 s,
    // on b2 and on the first stand-in b0 while b0 was in a refill it then left. b1 missed that write:
    // every sidecar had applied its out at 12.83 s. b1's fill copied nothing over its miss (the
    // miss might have been a delete it took since), went trusted, and b0's fill then deleted the
    // write from b0 (a lost write at 26.06 s). Now the mark of b1's out on b0, under the write, says
    // b1 took nothing since, and b0's left-after key that every sidecar had acknowledged b2's out
    // before anyone applied b0's (so b2 took no delete b0 missed): the item is copied over the miss.
    { seed: 793, steps: 223_000, rule: "a natural member's miss is older than a stand-in's item over its out-applied mark", timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // The same shape, four backends, the other natural member out after the write with every
    // sidecar's acknowledgement before anyone applied the stand-in's out (its left-after key).
    { seed: 956, steps: 220_000, rule: 'the same, the other natural member gone after the stand-in took the write', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // sess:4's natural members b1 and b2, b0 the first stand-in. With b2 out, s0.4's set #941 reached
    // b1 and hung on b0 (SIGSTOP); b0 went out and the set was acknowledged from b1. b2 came back in
    // refill and took two deletes of sess:4 (their delete records on b2); b1 was killed and came back
    // empty; the set then landed on b0, still out. b0's reconcile found no source and kept it, b0 went
    // trusted, and b2's and b1's fills copied it back (a deleted key served at 106.14 s). Now b2's delete
    // record, over b2's mark of b0's out and over b2's refill-began key, says the delete was sent after
    // b0 stopped taking writes, so after every write b0 held from before its refill: b0's item goes.
    { seed: 2889, steps: 210_000, rule: "a late write on a stand-in goes when a member's delete record is over its mark of the stand-in's out", timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // key:4's natural members b2 and b3, stand-ins b0 and b1. #394 reached b0 and timed out on b1
    // (delayed), which went out; it landed there while b1 was out. Later writes went to b0 and b3,
    // then to b2 and b3, and a delete reached b2, b0 and b3, all in refill (their delete records). b1
    // came back, its reconcile kept #394 (no source, no trusted natural member), and b2's and b3's fills
    // copied it from b1 once trusted (a stale read at 18.18 s). A delete record over the mark of b1's
    // out (b2's, which b2 took at its own refill proposal, or b0's) now drops it.
    { seed: 1819, steps: 130_000, rule: 'the same, a write delayed on a later stand-in', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // Two backends left moments apart, each marked trusted when the other left, and every sidecar
    // restarted since. Three candidates that kept their data: b1 and b2 each outlasted the other
    // trusted, b0 was outlasted by both and outlasted them only in the refill it is in. sess:5's latest
    // write was on b2 and b3 (restarted since); b0, the lowest address, went first without it, and the
    // others were made like it (a stale read at 35.10 s). b1 and b2 are now the sources of pass 1's graph
    // of who outlasted whom: b1 goes first (no holder of sess:5), then b2, which only b0's refill still
    // going on outlasted.
    { seed: 2904, steps: 90_000, rule: 'of candidates each outlasted, the lowest address among the sources of the outlasted graph', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // s2 started cut off from b3, so its survey added b0's, b2's and b4's incarnation keys not
    // whole (`0`), ahead of s0's and s1's `0 0`. b0 never restarted, but counted as come back empty
    // from then on: with every backend in refill, b1 (a natural member of sess:3 with an older
    // value) went first while b0, trusted when b1 left, held the key's latest write alone (a stale
    // read at 9.83 s). s0 and s1, whose surveys every backend answered, now mark those keys whole.
    { seed: 3048, steps: 90_000, rule: 'a new cluster\'s incarnation key marked whole by a sidecar whose survey every backend answered', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // b0 and b1 each took writes trusted while the other was out. s3.0's view lagged one out behind,
    // so its note said b1 outlasted b0 and nothing of b0 outlasting b1; the three other sidecars,
    // whose notes said both, restarted. With b0 and b1 in refill, s3.0's partial note was read
    // before the stand-in keys: b1 went first, and its fill overwrote b0's sess:7 #578 with the
    // older #573 (a stale read at 33.44 s). The others had left took-trusted notes on b0 and b1:
    // the cycle is known, and b0 goes first.
    { seed: 1590, steps: 135_000, rule: "a witness's took-trusted note outlives it and completes a live witness's partial one", timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // The same shape with eight sidecars (a stale read of sess:12 at 18.81 s).
    { seed: 3860, steps: 240_000, rule: 'the same, eight sidecars', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // A natural member restarted more than once in one time away (out, refill, out again), and every
    // sidecar that saw it leave died. The restart took its incarnation key's filled epoch, so the
    // departure was read from the stand-in key of its current out, later than the real one: a
    // stand-in's copy of the key's latest write, taken in between, counted as left from before, and
    // the other natural member's older copy won (a stale read at 124.56 s). The stand-in key of an
    // out from a refill now names the out epoch at which the time away began.
    { seed: 126, steps: 240_000, rule: 'a departure read across a restart from the epoch the stand-in key of an out from a refill names', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
    // The same shape, five backends (a stale read at 21.42 s).
    { seed: 4235, steps: 80_000, rule: 'the same, five backends', timing: { requestTimeoutMs: 300, quickRounds: 3 } },
  ];
  for (const { seed, steps, rule, timing = FOUND_AT, kinds } of REPLAYS) {
    test(`seed ${seed}, ${kinds === undefined ? 'every kind of fault' : kinds.join(', ')}: ${rule}`, async () => {
      const result = await simulate({ seed, ...shapeOf(seed), steps, ...timing, ...(kinds !== undefined && { faults: { kinds } }), log });
      expect(result.counts).toEqual({});
    });
  }

  // Backends in two zones (backend b in zone b mod 2): placement by preference order, stand-ins from the other zone.
  test.each([11, 12])(`seed %i, backends in two zones: every invariant holds for 100000 steps under the same faults`, async (seed) => {
    const result = await simulate({ seed, ...shapeOf(seed), zones: 2, steps: 100_000, faults: { kinds: KINDS }, log });
    expect(result.counts).toEqual({});
    expect(result.steps).toBe(100_000);
  });
});

describe('without the trust protocol (each sidecar routes by its own view: NO_RESYNC)', () => {
  /** Runs until a violation of `kind` is found, at most 200,000 events. */
  const hunt = async (seed: number, kinds: readonly FaultKind[], kind: ViolationKind) => {
    const result = await simulate({ seed, ...shapeOf(seed), protocol: 'none', steps: 200_000, faults: { kinds }, stopWhen: (counts) => counts.has(kind) });
    expect(result.counts[kind], `seed ${seed}: no ${kind} in ${result.steps} steps`).toBeGreaterThan(0);
    return result;
  };
  const ONE_SIDED: FaultKind[] = ['reset', 'refuse', 'one-way'];

  test('finds a double lock: a path fails for one sidecar only (3 sidecars)', () => hunt(3, ONE_SIDED, 'double-lock'));

  test('finds a deleted session served: a delete through one sidecar skips the member the other reads (2 sidecars)', () =>
    hunt(6, ONE_SIDED, 'deleted-served'));

  test('finds an acknowledged write lost: a memcached restarted empty is trusted again (2 sidecars)', () =>
    hunt(6, ['kill', 'restart'], 'lost-write'));

  test('finds a miss answered while the members hang (SIGSTOP): a timeout is not a miss (2 sidecars)', () =>
    hunt(6, ['sigstop'], 'lost-write'));

  test('finds members that never converge once the faults stop (2 sidecars)', () => hunt(6, ['kill', 'restart'], 'diverged'));
});

describe('replay', () => {
  test.each(['trust', 'none'] as const)('%s: a seed gives the same run, event for event, and the same reports', async (protocol) => {
    const options = { seed: 9, ...shapeOf(9), protocol, steps: 40_000, stopWhen: () => false };
    const [a, b] = [await simulate(options), await simulate(options)];
    expect(a.steps).toBe(40_000);
    expect(a.events).toBeGreaterThan(5_000);
    expect(b.traceHash).toBe(a.traceHash);
    expect(b.events).toBe(a.events);
    expect(b.counts).toEqual(a.counts);
    expect(b.violations.map((v) => report(b, v))).toEqual(a.violations.map((v) => report(a, v)));
  });
});
