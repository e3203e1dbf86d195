// Strict "host:port" parsing. The host is an IPv4 address, an IPv6 address in
// brackets ("[::1]:11211": without them the port cannot be told apart), or a
// DNS hostname; the port is decimal digits only.

import { isIP, isIPv4, isIPv6 } from 'node:net';
import type { BackendsFrom, HostPort } from './types';

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const HOSTNAME_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * Parses "host:port". `minPort` is 1 for backends, 0 for listen addresses
 * (port 0: the system picks a free port).
 */
export function parseHostPort(text: string, minPort: 0 | 1): Parsed<HostPort> {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { ok: false, problem: `must be "host:port", got ${JSON.stringify(text)}` };
  const hostText = text.slice(0, colon);
  const portText = text.slice(colon + 1);

  let host: string;
  if (hostText.startsWith('[') && hostText.endsWith(']')) {
    const inner = hostText.slice(1, -1);
    if (!isIPv6(inner)) return { ok: false, problem: `${JSON.stringify(inner)} is not an IPv6 address` };
    // The URL parser writes IPv6 in its canonical form, so "[0:0::1]" and "[::1]" are one backend.
    host = new URL(`http://${hostText}/`).hostname.slice(1, -1);
  } else if (hostText.includes(':')) {
    return { ok: false, problem: `an IPv6 address needs brackets, as in "[::1]:11211", got ${JSON.stringify(text)}` };
  } else if (!isHost(hostText)) {
    return {
      ok: false,
      problem: `host must be an IPv4 address, a bracketed IPv6 address or a hostname, got ${JSON.stringify(hostText)}`,
    };
  } else {
    host = hostText;
  }

  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= minPort && port <= 65535)) {
    return { ok: false, problem: `port must be ${minPort}..65535, got ${JSON.stringify(portText)}` };
  }
  return { ok: true, value: { host, port } };
}

/** The canonical "host:port" text: the IPv6 host in brackets, a hostname in lower case. */
export function formatHostPort({ host, port }: HostPort): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host.toLowerCase()}:${port}`;
}

function isHost(text: string): boolean {
  if (text.length === 0 || text.length > 253) return false;
  const labels = text.split('.');
  // All-numeric dotted text is meant as an IPv4 address, so it must be a valid one.
  if (labels.every((l) => /^[0-9]+$/.test(l))) return isIPv4(text);
  return labels.every((l) => HOSTNAME_LABEL.test(l));
}

/** A DNS name's label: letters, digits and hyphens, or a service label such as "_memcache" (SRV names). */
const DNS_LABEL = /^_?[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;

/** A name to look up (not an address); one trailing dot, the root, is dropped. Lower case. */
function dnsName(text: string): string | null {
  const name = text.endsWith('.') ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > 253 || isIP(name) !== 0) return null;
  if (name.split('.').every((l) => /^[0-9]+$/.test(l))) return null;
  return name.split('.').every((l) => DNS_LABEL.test(l)) ? name.toLowerCase() : null;
}

const BACKENDS_FROM_FORMS = '"dns://<name>:<port>" (A/AAAA records) or "dnssrv://<name>" (SRV records)';

/** Parses `backendsFrom`: "dns://name:port" or "dnssrv://name". */
export function parseBackendsFrom(text: string): Parsed<BackendsFrom> {
  const m = /^([a-z]+):\/\/(.*)$/i.exec(text);
  const scheme = m?.[1].toLowerCase();
  if (m === null || (scheme !== 'dns' && scheme !== 'dnssrv')) {
    return { ok: false, problem: `must be ${BACKENDS_FROM_FORMS}, got ${JSON.stringify(text)}` };
  }
  const rest = m[2];
  if (scheme === 'dnssrv') {
    if (/:[0-9]*$/.test(rest)) return { ok: false, problem: `takes no port: each SRV record carries its own, got ${JSON.stringify(text)}` };
    const name = dnsName(rest);
    if (name === null) return { ok: false, problem: `${JSON.stringify(rest)} is not a DNS name` };
    return { ok: true, value: { url: `dnssrv://${name}`, scheme, name, port: null } };
  }
  const colon = rest.lastIndexOf(':');
  if (colon < 0) return { ok: false, problem: `needs the backends' port, as in "dns://memcached.default.svc.cluster.local:11211", got ${JSON.stringify(text)}` };
  const name = dnsName(rest.slice(0, colon));
  if (name === null) return { ok: false, problem: `${JSON.stringify(rest.slice(0, colon))} is not a DNS name (an address goes in backends)` };
  const portText = rest.slice(colon + 1);
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) return { ok: false, problem: `port must be 1..65535, got ${JSON.stringify(portText)}` };
  return { ok: true, value: { url: `dns://${name}:${port}`, scheme, name, port } };
}

/**
 * A DNS server: an IP address with an optional port ("10.96.0.10", "127.0.0.1:5353",
 * "[::1]:53"), in the form node:dns setServers takes.
 */
export function parseDnsServer(text: string): Parsed<string> {
  if (isIP(text) !== 0) return { ok: true, value: text };
  const hp = parseHostPort(text, 1);
  if (!hp.ok || isIP(hp.value.host) === 0) {
    return { ok: false, problem: `must be an IP address, optionally with a port ("10.96.0.10", "127.0.0.1:5353", "[::1]:53"), got ${JSON.stringify(text)}` };
  }
  return { ok: true, value: formatHostPort(hp.value) };
}
