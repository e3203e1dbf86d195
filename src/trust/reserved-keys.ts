// Every key replicached stores on the backends for itself: its name, expiry,
// writer and meaning. Resyncs never copy or prune them, and clients' keys never
// start with RESERVED_PREFIX in practice (PHP session keys are prefixed
// `memc.sess.` or `sess_`).

import { createHash } from 'node:crypto';
import { FORGET_PEER_AFTER_MS, type Stage } from './protocol';

export const RESERVED_PREFIX = 'replicached:';

/** memcached's longest relative expiry (30 days); longer values are read as a Unix time. */
export const LONGEST_RELATIVE_EXPIRY_S = 60 * 60 * 24 * 30;

export interface ReservedKey {
  name: string;
  /** Seconds; every reserved key expires. */
  ttlSeconds: number;
  writer: string;
  meaning: string;
}

/** A sidecar's trust record (docs/trust.md), on every backend it reaches. */
export const RECORD_TTL_S = 10;
export function recordKey(id: string): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}trust:${id}`);
}

export const ROSTER_KEY = Buffer.from(`${RESERVED_PREFIX}trust-roster`);
export const ROSTER_TTL_S = 60 * 60 * 24;
/**
 * An id whose record a sidecar has read missing this long leaves the roster (TrustAgent.rosterPruned):
 * the bound after which the protocol forgets a peer whose record stood still.
 */
export const ROSTER_PRUNE_AFTER_MS = FORGET_PEER_AFTER_MS;

export const INCARNATION_KEY = Buffer.from(`${RESERVED_PREFIX}incarnation`);

/**
 * An incarnation key's value as added at `epoch`: that epoch, then, for a new cluster's backend
 * known whole (`whole`), the epoch at which it was made whole, the same one.
 */
export function incarnationValue(epoch: number, whole: boolean): Buffer {
  return Buffer.from(whole ? `${epoch} ${epoch}` : String(epoch));
}

/**
 * Whether an incarnation key's value was written for the backend's refill at `epoch`: added at
 * the out epoch just before it, or with ` r<epoch>` appended (TrustAgent.markRefill). Then its CAS
 * is under every write the backend takes in that refill.
 */
export function incarnationNamesRefill(value: Buffer, epoch: number): boolean {
  const words = value.toString('latin1').split(' ');
  return Number(words[0]) === epoch - 1 || words.includes(`r${epoch}`);
}

/**
 * On every other backend, when Y goes out at `epoch`: its CAS is under every write a
 * stand-in took for Y's keys in that outage (see src/trust/agent.ts, standInSince); its
 * value, `<sidecar id> trusted|away <placement digest>[ r<refill epoch>][ s<epoch>][ late|joined]`, says
 * whether the backend it is on took Y's writes from then on (`trusted`: it was trusted or in
 * refill, and not going out; see markedOutlasted, standInSince), for which placement
 * (stoodInThroughout), with `r<e>`, that it took them in its refill at e, not trusted
 * (markedOutlasted), with `s<epoch>`, that Y went out again from a refill and its time away
 * began at that earlier out epoch (departureMark follows it when a restart of Y took the
 * incarnation key's filled epoch), and with a note, that it was written after Y's out applied: `late`, once a
 * view was fresh (see serving in src/trust/agent.ts), nobody having served since the out; `joined`,
 * when the backend it is on entered refill while Y was away, from when on it took Y's writes
 * (markJoined), not holding what Y's keys were when Y left. Y took no write from before either
 * (outageMarksOf), and a `joined` one does not say its backend stood in all along (stoodInThroughout).
 */
export function standInKey(address: string, epoch: number): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}standin:${address}:${epoch}`);
}

/**
 * On every backend trusted or in refill when Y's refill at `epoch` applies (an add: the first one
 * stays): its CAS is under every write the backend took from then on for a key of which Y is a
 * natural member, and each of those went to Y too while Y stays in that refill; its value,
 * `<sidecar id> <placement digest> <the backend's stage>`, the stage its trusted epoch or
 * `r<epoch>` in refill (see src/trust/agent.ts, refillingSince and refillTookSince, and
 * src/resync/resync-run.ts, copyFromMembers).
 */
export function refillKey(address: string, epoch: number): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}refill:${address}:${epoch}`);
}

/** How a refill key's value names the stage of the backend it is on: its trusted epoch, or `r<epoch>` in refill. */
export function refillKeyStage(stage: Stage): string {
  return stage.role === 'refill' ? `r${stage.epoch}` : String(stage.epoch);
}

/**
 * On a backend, as a sidecar proposes its refill at `epoch` (after the incarnation key, before
 * the proposal; a set): its CAS is under every write the backend takes from that refill on, but
 * for those before a concurrent proposer's set. The incarnation key marks the current refill
 * only; this one outlasts it (see src/trust/agent.ts, outageRefillSince).
 */
export function refillBeganKey(epoch: number): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}refill-began:${epoch}`);
}

/**
 * On every other backend, as a fresh sidecar applies Y's out at `epoch` because every live record
 * acknowledged it (a set: a later one marks less): from then on no sidecar sends Y anything until Y's
 * next refill applies, and every request sent to Y under an older view has ended. An item of a
 * stand-in with a higher CAS was written after Y stopped taking writes (src/trust/agent.ts, missedSince).
 */
export function outAppliedKey(address: string, epoch: number): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}out-applied:${address}:${epoch}`);
}

/**
 * On every other backend, as a fresh sidecar applies Y's out at `epoch` because every live record
 * acknowledged it, while no live record shows that out applied yet: `<sidecar id> <backend>=<out
 * epoch> ...`, the backends (not trusted) whose out at that epoch or later every live record had
 * acknowledged by then. No sidecar applied Y's out before it stopped sending those backends
 * anything, so each delete they took while Y was still taking writes reached Y too, where it was
 * in the key's placement (src/trust/agent.ts, missedSince).
 */
export function leftAfterKey(address: string, epoch: number): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}left-after:${address}:${epoch}`);
}

/**
 * On a backend D, by a sidecar that noted D taking writes trusted (not in refill, not going out)
 * while Y was out, in Y's time away that began at out epoch `since` (TrustRecord.outlasted, there
 * with no refill): the sidecar's id. The witness's note, kept where it outlives the witness, and
 * read by Several in refill beside what live witnesses tell (src/trust/agent.ts, markedOutlasted).
 */
export function tookTrustedKey(address: string, since: number): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}took-trusted:${address}:${since}`);
}

/** The sidecar that wrote an out-applied, left-after or took-trusted key: the first word of its value. */
export function markWriter(value: Buffer): string {
  return value.toString('latin1').split(' ', 1)[0];
}

/** What a stand-in key written after its out applied says of when (see standInKey). */
export type StandInNote = 'late' | 'joined';

/**
 * A stand-in key's value: who wrote it, whether the backend it is on took writes then (trusted or
 * in refill, not going out), the placement's digest, the refill, the out epoch at which Y's time
 * away began (when earlier than this out's), the note.
 */
export function standInValue(writer: string, trusted: boolean, digest: string, refill?: number, note?: StandInNote, awaySince?: number): Buffer {
  const took = trusted && refill !== undefined ? ` r${refill}` : '';
  return Buffer.from(`${writer} ${trusted ? 'trusted' : 'away'} ${digest}${took}${awaySince !== undefined ? ` s${awaySince}` : ''}${note !== undefined ? ` ${note}` : ''}`);
}

/** The id of the sidecar that wrote a stand-in key. */
export function standInWriter(value: Buffer): string {
  return value.toString('latin1').split(' ')[0];
}

/** The stand-in key's value says `trusted`: its backend took Y's writes from then on. */
export function standInTrusted(value: Buffer): boolean {
  return value.toString('latin1').split(' ')[1] === 'trusted';
}

/** The note of a stand-in key written after its out applied (see standInKey); undefined: written before. */
export function standInNote(value: Buffer): StandInNote | undefined {
  const words = value.toString('latin1').split(' ');
  const last = words[words.length - 1];
  return words.length > 3 && (last === 'late' || last === 'joined') ? last : undefined;
}

/** The refill epoch a `trusted` stand-in key's value names: its backend took the writes in that refill (undefined: trusted). */
export function standInRefill(value: Buffer): number | undefined {
  const word = value.toString('latin1').split(' ')[3];
  const epoch = word?.startsWith('r') === true ? Number(word.slice(1)) : NaN;
  return Number.isSafeInteger(epoch) ? epoch : undefined;
}

/** The out epoch at which Y's time away began, as a stand-in key of a later out in it names (undefined: not named). */
export function standInAwaySince(value: Buffer): number | undefined {
  const word = value.toString('latin1').split(' ').slice(3).find((w) => /^s[0-9]+$/.test(w));
  const epoch = word === undefined ? NaN : Number(word.slice(1));
  return Number.isSafeInteger(epoch) ? epoch : undefined;
}

/** The placement digest a stand-in key's value names (undefined in one written without). */
export function standInDigest(value: Buffer): string | undefined {
  return value.toString('latin1').split(' ')[2];
}

/**
 * On a stand-in, just before it takes a client's delete of `key` (a natural member away): its
 * CAS says the key was deleted there after that moment. A stand-in that stood in all along and
 * misses the key then proves a natural member's older copy deleted (src/resync/resync-run.ts,
 * deletedWhileStandingIn). Named by a digest of the key, so any key has one.
 */
export function deleteRecordKey(key: Buffer): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}deleted:${createHash('sha1').update(key).digest('hex')}`);
}

/**
 * On a backend in refill, just after a fill copied an item onto it by Earlier refills (newer than
 * what it held, maybe not the key's latest): its value is that copy's CAS, so no later fill takes
 * the copy for a write the backend took in its refill, by Refill sources or Earlier refills
 * (src/resync/resync-run.ts, recordCopy). A restart wipes the copy and the record alike.
 */
export function copiedRecordKey(key: Buffer): Buffer {
  return Buffer.from(`${RESERVED_PREFIX}copied:${createHash('sha1').update(key).digest('hex')}`);
}

/** The key whose CAS marks the start of a reconcile run; stored already expired, so never served. */
export const MARK_KEY = Buffer.from(`${RESERVED_PREFIX}resync-mark`);

export const RESERVED_KEYS: readonly ReservedKey[] = [
  {
    name: `${RESERVED_PREFIX}trust:<sidecar id>`,
    ttlSeconds: RECORD_TTL_S,
    writer: 'each sidecar, every round (50 ms), on every backend it reaches',
    meaning: 'the stages it routes by, the stages it acknowledged, the backends it reaches',
  },
  {
    name: ROSTER_KEY.toString(),
    ttlSeconds: ROSTER_TTL_S,
    writer: 'each sidecar that finds its id missing (append); every round renews the expiry; a sidecar that has read an id\'s record missing for 5 minutes removes that id (CAS-guarded)',
    meaning: 'the ids whose records to read',
  },
  {
    name: INCARNATION_KEY.toString(),
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: 'the sidecar that proposes the backend\'s refill (an add when gone, else an append of ` r<epoch>`), or the first sidecar of a new cluster; every round renews it',
    meaning: 'present: this memcached process holds replicated data; gone: it restarted empty. Its CAS, when its value names the refill, is under every write the backend takes in that refill',
  },
  {
    name: `${RESERVED_PREFIX}standin:<backend>:<epoch>`,
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: 'every sidecar, before it acknowledges that backend out (an add: the first one stays, unless its writer is no live sidecar: then a CAS-guarded set), or, if its view was not fresh then, before it next serves (an add); one that says away, or none, on a backend entering refill while that one is away: before the refill is acknowledged, and as it applies (a CAS-guarded set, or an add)',
    meaning: 'its CAS: items a stand-in holds with a higher one were written while that backend was out; its value: the writer, whether this backend took writes then (trusted or in refill, not going out), a placement digest',
  },
  {
    name: `${RESERVED_PREFIX}refill:<backend>:<epoch>`,
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: "every sidecar, as that backend's refill applies, on each backend it has trusted or in refill (an add: the first one stays)",
    meaning: 'its CAS: items with a higher one were written while that backend, in refill, took the writes of its natural keys; its value: the writer, a placement digest, the stage of the backend it is on (its trusted epoch, or r<epoch> in refill)',
  },
  {
    name: `${RESERVED_PREFIX}refill-began:<epoch>`,
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: 'each sidecar that proposes the backend\'s refill at that epoch, on that backend (a set)',
    meaning: 'its CAS: items with a higher one were written since that refill began, each while the backend took the writes of the keys it would hold',
  },
  {
    name: `${RESERVED_PREFIX}out-applied:<backend>:<epoch>`,
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: "every fresh sidecar that applies that backend's out because every live record acknowledged it, on every other backend (a set)",
    meaning: 'its CAS: items with a higher one were written after that backend stopped taking writes, until its next refill',
  },
  {
    name: `${RESERVED_PREFIX}left-after:<backend>:<epoch>`,
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: "every fresh sidecar that applies that backend's out because every live record acknowledged it, while no live record shows it applied, on every other backend (a set)",
    meaning: 'its value: the backends, with an out epoch each, whose outs every live sidecar had acknowledged before anyone applied this one',
  },
  {
    name: `${RESERVED_PREFIX}took-trusted:<backend>:<epoch>`,
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: 'every witnessing sidecar that saw the backend it is on take writes trusted while that backend was out, in the time away that began at that out epoch, once per sidecar (a set)',
    meaning: "its value: the writer; the backend it is on outlasted that backend, trusted: an edge of Several in refill's graph that outlives its witness",
  },
  {
    name: `${RESERVED_PREFIX}deleted:<sha1 of the key>`,
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: "every sidecar, on each stand-in, and each natural member in refill, it sends a client's delete of the key, just before the delete (a set)",
    meaning: 'its CAS: the key was deleted on that backend after it; one per key so deleted, not per delete',
  },
  {
    name: `${RESERVED_PREFIX}copied:<sha1 of the key>`,
    ttlSeconds: LONGEST_RELATIVE_EXPIRY_S,
    writer: 'a fill, on the backend in refill it copied an item onto by Earlier refills, just after the copy (a set)',
    meaning: 'its value: the CAS of that copy, which is no write the backend took in its refill',
  },
  {
    name: MARK_KEY.toString(),
    ttlSeconds: 0,
    writer: 'a reconcile run, as it begins (stored already expired)',
    meaning: 'its CAS tells items written before the run from items written since',
  },
];

export function isReserved(key: Buffer | string): boolean {
  const s = typeof key === 'string' ? key : key.toString('latin1', 0, RESERVED_PREFIX.length);
  return s.startsWith(RESERVED_PREFIX);
}
