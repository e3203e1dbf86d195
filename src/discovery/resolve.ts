// One resolution of backendsFrom: DNS's answer turned into a backend list, or the
// reason there is none. Pure but for the lookups, which come in as a parameter.
//
//   dns://name:port   A and AAAA of name, asked together  -> each address on port
//   dnssrv://name     SRV of name                          -> each target on its port
//
// The list is sorted (every sidecar asking gets the same order, whatever order
// the server rotates its records into) and without duplicates. SRV priority and
// weight are not used: every target is a member of weight 1. Kubernetes' cluster
// DNS rescales the weights of a Service's records whenever a pod comes or goes
// (they share 100), so taking them would move keys on every backend at each change.
// SRV targets stay names: a StatefulSet pod keeps its name when it comes back with
// another address, and its return is then a restart (refilled), not a new member.

import type { RecordWithTtl, SrvRecord } from 'node:dns';
import { isIPv6 } from 'node:net';
import type { BackendConfig, BackendsFrom } from '../config';
import { formatHostPort } from '../config/address';
import type { DiscoveryFailureReason } from '../metrics/registry';

/** The lookups a resolution makes: node:dns/promises' Resolver, or a script in tests. */
export interface DnsLookups {
  resolve4(name: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  resolve6(name: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  resolveSrv(name: string): Promise<SrvRecord[]>;
}

export type Answer =
  | {
      ok: true;
      backends: BackendConfig[];
      /** The smallest TTL of the records, in ms; null when DNS does not say (SRV through node:dns). */
      ttlMs: number | null;
    }
  | { ok: false; reason: DiscoveryFailureReason; detail: string };

/** node:dns error codes (c-ares) and the reason each is counted under. */
const REASON_OF_CODE: Readonly<Record<string, DiscoveryFailureReason>> = {
  ENOTFOUND: 'nxdomain',
  ENODATA: 'empty',
  ESERVFAIL: 'servfail',
  ETIMEOUT: 'timeout',
  EREFUSED: 'refused',
};

function failure(err: unknown): Answer & { ok: false } {
  const code = (err as { code?: unknown }).code;
  const reason = (typeof code === 'string' ? REASON_OF_CODE[code] : undefined) ?? 'error';
  return { ok: false, reason, detail: err instanceof Error ? err.message : String(err) };
}

/** One lookup: its records, none (the name has no such records), or a failure. */
async function attempt<T>(lookup: () => Promise<T[]>): Promise<T[] | (Answer & { ok: false })> {
  try {
    return await lookup();
  } catch (err) {
    const f = failure(err);
    return f.reason === 'empty' ? [] : f;
  }
}

function backendAt(host: string, port: number): BackendConfig {
  const address = formatHostPort({ host, port });
  return { address, host: isIPv6(host) ? host : host.toLowerCase(), port, weight: 1, local: false, zone: null };
}

/** Digit runs compared as numbers, the rest as text: "10.0.0.9" before "10.0.0.10", the same on every sidecar. */
export function compareAddresses(a: string, b: string): number {
  const pa = a.match(/\d+|\D+/g) ?? [];
  const pb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] === pb[i]) continue;
    const na = /^\d/.test(pa[i]) && /^\d/.test(pb[i]);
    if (na && Number(pa[i]) !== Number(pb[i])) return Number(pa[i]) - Number(pb[i]);
    return pa[i] < pb[i] ? -1 : 1;
  }
  return pa.length - pb.length;
}

function sortedUnique(backends: BackendConfig[]): BackendConfig[] {
  const byAddress = new Map(backends.map((b) => [b.address, b]));
  return [...byAddress.values()].sort((a, b) => compareAddresses(a.address, b.address));
}

/**
 * Asks DNS once. A name with A records and no AAAA (or the reverse) is a good answer; a failure
 * of either lookup fails the whole answer, so that a partial answer never removes members.
 */
export async function resolveBackends(from: BackendsFrom, dns: DnsLookups): Promise<Answer> {
  if (from.scheme === 'dnssrv') {
    const records = await attempt(() => dns.resolveSrv(from.name));
    if (!Array.isArray(records)) return records;
    // A target of "." says the service is not offered there (RFC 2782).
    const targets = records.filter((r) => r.name !== '' && r.name !== '.');
    if (targets.length === 0) return { ok: false, reason: 'empty', detail: `no SRV records for ${from.name}` };
    return { ok: true, backends: sortedUnique(targets.map((r) => backendAt(r.name.replace(/\.$/, ''), r.port))), ttlMs: null };
  }
  const [v4, v6] = await Promise.all([attempt(() => dns.resolve4(from.name, { ttl: true })), attempt(() => dns.resolve6(from.name, { ttl: true }))]);
  if (!Array.isArray(v4)) return v4;
  if (!Array.isArray(v6)) return v6;
  const records = [...v4, ...v6];
  if (records.length === 0) return { ok: false, reason: 'empty', detail: `no A or AAAA records for ${from.name}` };
  const port = from.port ?? 0;
  return {
    ok: true,
    backends: sortedUnique(records.map((r) => backendAt(r.address, port))),
    ttlMs: Math.min(...records.map((r) => r.ttl)) * 1000,
  };
}
