// Meta replies to MemcachedNode outcomes, one function per operation. Checked
// against memcached 1.6.18:
//   mg:  VA hit, EN miss                  (mg with only T: HD touched, EN missing)
//   ms:  HD stored, NS not stored (add on an existing key, replace/append/prepend
//        on a missing one), EX cas mismatch, NF cas on a missing key
//   md:  HD deleted, NF missing (with or without C), EX cas mismatch
//   ma:  VA value, NF missing (no N), CLIENT_ERROR cannot increment or decrement
//        non-numeric value
//        SERVER_ERROR object too large for cache: the value is over the backend's -I
// Anything else (another SERVER_ERROR, an unexpected code) is a failure of that request.

import type { FinalReply, MetaReply } from '../protocol/backend/meta';
import { parseU64 } from '../protocol/backend/meta';
import type { Failed, NodeArith, NodeCas, NodeDelete, NodeFlush, NodeGet, NodeStore, NodeTouch } from '../routing/node';
import { failed } from './connection';

const NON_NUMERIC = 'cannot increment or decrement non-numeric value';
const TOO_LARGE = 'object too large for cache';

export function describe(reply: FinalReply): string {
  switch (reply.type) {
    case 'meta':
      return `unexpected reply ${reply.code}`;
    case 'error':
      return reply.message ? `${reply.code} ${reply.message}` : reply.code;
    case 'line':
      return `unexpected reply ${JSON.stringify(reply.text.slice(0, 80))}`;
    case 'end':
      return 'unexpected reply END';
  }
}

function meta(reply: FinalReply): MetaReply | null {
  return reply.type === 'meta' ? reply : null;
}

export function toGet(reply: FinalReply): NodeGet {
  const m = meta(reply);
  if (m?.code === 'EN') return { status: 'miss' };
  if (m?.code === 'VA') {
    if (m.value === undefined) return failed(`value of ${m.oversize} bytes is over the limit`);
    return {
      status: 'hit',
      item: { value: m.value, flags: m.flags.flags ?? 0, cas: m.flags.cas ?? 0n, ttl: m.flags.ttl ?? null },
    };
  }
  return failed(describe(reply));
}

export function toStore(reply: FinalReply): NodeStore {
  const m = meta(reply);
  switch (m?.code) {
    case 'HD':
      return { status: 'stored', cas: m.flags.cas ?? 0n };
    case 'NS':
      return { status: 'not_stored' };
    case 'EX':
      return { status: 'exists' };
    case 'NF':
      return { status: 'not_found' };
    default:
      if (reply.type === 'error' && reply.code === 'SERVER_ERROR' && reply.message === TOO_LARGE) {
        return { status: 'too_large' };
      }
      return failed(describe(reply));
  }
}

export function toDelete(reply: FinalReply): NodeDelete {
  switch (meta(reply)?.code) {
    case 'HD':
      return { status: 'deleted' };
    case 'NF':
      return { status: 'not_found' };
    case 'EX':
      return { status: 'exists' };
    default:
      return failed(describe(reply));
  }
}

/** `mg <key> c` answers HD; the binary codec's CAS-only read is a GET, answered VA (its value unused). */
export function toCas(reply: FinalReply): NodeCas {
  const m = meta(reply);
  if (m?.code === 'EN') return { status: 'miss' };
  if ((m?.code === 'HD' || m?.code === 'VA') && m.flags.cas !== undefined) return { status: 'hit', cas: m.flags.cas, ttl: m.flags.ttl ?? null };
  return failed(describe(reply));
}

export function toTouch(reply: FinalReply): NodeTouch {
  switch (meta(reply)?.code) {
    case 'HD':
      return { status: 'touched', cas: meta(reply)?.flags.cas ?? 0n };
    case 'EN':
      return { status: 'not_found' };
    default:
      return failed(describe(reply));
  }
}

export function toArith(reply: FinalReply): NodeArith {
  if (reply.type === 'error' && reply.code === 'CLIENT_ERROR' && reply.message === NON_NUMERIC) {
    return { status: 'non_numeric' };
  }
  const m = meta(reply);
  if (m?.code === 'NF') return { status: 'not_found' };
  if (m?.code === 'VA' && m.value !== undefined) {
    const value = parseU64(m.value);
    if (value === null) return failed('ma returned a non-numeric value');
    return { status: 'ok', value, cas: m.flags.cas ?? 0n };
  }
  return failed(describe(reply));
}

export function toFlush(reply: FinalReply): NodeFlush {
  return reply.type === 'line' && reply.text === 'OK' ? { status: 'ok' } : failed(describe(reply));
}

export function toVersion(reply: FinalReply): { status: 'ok'; version: string } | Failed {
  if (reply.type === 'line' && reply.text.startsWith('VERSION ')) return { status: 'ok', version: reply.text.slice(8) };
  return failed(describe(reply));
}
