// A DNS server for tests, on 127.0.0.1 and a free UDP port, whose answers the test sets
// and changes while replicached asks it (backendsFrom, discovery.servers).
//
//   const dns = await startDnsServer();
//   dns.answer('memcached.test', { a: ['127.0.0.1', '127.0.0.2'], ttl: 0 });
//   dns.answer('_memcache._tcp.test', { srv: [{ target: '127.0.0.1', port: 11211 }] });
//   dns.answer('memcached.test', { rcode: 'NXDOMAIN' });   // or SERVFAIL, REFUSED
//   dns.answer('memcached.test', {});                       // NOERROR, no records
//   dns.answer('memcached.test', { drop: true });           // no reply at all
//   dns.address                                             // "127.0.0.1:<port>"
//   await dns.close();
//
// Packets are encoded and decoded by dns-packet; the socket is node:dgram's. A name with
// no answer set gets NXDOMAIN.

import dgram from 'node:dgram';
import dnsPacket, { type Answer, type Packet } from 'dns-packet';

export type DnsAnswer =
  | { a?: string[]; aaaa?: string[]; srv?: Array<{ target: string; port: number; priority?: number; weight?: number }>; ttl?: number }
  | { rcode: 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' }
  | { drop: true };

export interface DnsServer {
  /** "127.0.0.1:<port>", as discovery.servers takes it. */
  readonly address: string;
  /** Sets what `name` is answered from now on (every record type asked). */
  answer(name: string, answer: DnsAnswer): void;
  /** Queries received so far, per name. */
  queries(name: string): number;
  close(): Promise<void>;
}

const RCODES = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

function records(name: string, type: string, a: DnsAnswer & { ttl?: number }): Answer[] {
  if ('rcode' in a || 'drop' in a) return [];
  const ttl = a.ttl ?? 0;
  if (type === 'A') return (a.a ?? []).map((data) => ({ type: 'A', name, ttl, data }));
  if (type === 'AAAA') return (a.aaaa ?? []).map((data) => ({ type: 'AAAA', name, ttl, data }));
  if (type === 'SRV') {
    return (a.srv ?? []).map((s) => ({ type: 'SRV', name, ttl, data: { target: s.target, port: s.port, priority: s.priority ?? 0, weight: s.weight ?? 50 } }));
  }
  return [];
}

export async function startDnsServer(): Promise<DnsServer> {
  const answers = new Map<string, DnsAnswer>();
  const counts = new Map<string, number>();
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, from) => {
    let query: Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (question === undefined) return;
    const name = question.name.toLowerCase().replace(/\.$/, '');
    counts.set(name, (counts.get(name) ?? 0) + 1);
    const set = answers.get(name) ?? { rcode: 'NXDOMAIN' };
    if ('drop' in set) return;
    const rcode = 'rcode' in set ? RCODES[set.rcode] : RCODES.NOERROR;
    const reply = dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
      questions: [question],
      answers: records(question.name, question.type, set),
    });
    socket.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const { port } = socket.address();
  return {
    address: `127.0.0.1:${port}`,
    answer: (name, answer) => answers.set(name.toLowerCase(), answer),
    queries: (name) => counts.get(name.toLowerCase()) ?? 0,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
