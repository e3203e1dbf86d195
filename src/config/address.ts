// Strict "host:port" parsing. The host is an IPv4 address, an IPv6 address in
// brackets ("[::1]:11211": without them the port cannot be told apart), or a
// DNS hostname; the port is decimal digits only.

import { isIPv4, isIPv6 } from 'node:net';
import type { HostPort } from './types';

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
