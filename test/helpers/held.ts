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

/**
 * Each of `keys` not held by exactly its natural members, as "key: held by … / natural …", so
 * a failure says which copies are extra or missing. `mcs`: every memcached, each read directly.
 */
export async function misplacedKeys(mcs: ReadonlyArray<{ port: number; address: string }>, keys: readonly string[], naturalOf: (key: string) => string[]): Promise<string[]> {
  const sets = await Promise.all(mcs.map((m) => heldOn(m.port, keys)));
  return keys.flatMap((key) => {
    const holders = mcs.filter((_, i) => sets[i].has(key)).map((m) => m.address).sort().join(' ');
    const natural = naturalOf(key).sort().join(' ');
    return holders === natural ? [] : [`${key}: held by ${holders} / natural ${natural}`];
  });
}
