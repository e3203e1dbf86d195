// Which of a test's keys one memcached holds, read from it directly: where a proxy placed
// its copies, not what the proxy answers.

import { RawClient } from '../replication/support';

/** The keys of `keys` the memcached on `port` holds (one pipelined get each). */
export async function heldOn(port: number, keys: readonly string[]): Promise<Set<string>> {
  const c = await RawClient.connect(port);
  c.send(keys.map((k) => `get ${k}\r\n`).join(''));
  const text = (await c.read((b) => (b.toString('latin1').split('END\r\n').length - 1 >= keys.length ? b.length : null))).toString('latin1');
  c.close();
  return new Set([...text.matchAll(/^VALUE (\S+) /gm)].map((m) => m[1]));
}
