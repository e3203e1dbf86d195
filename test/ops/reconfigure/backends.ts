// What a memcached holds, read directly (bypassing replicached): every key it
// lists (`lru_crawler metadump all`), and each key's value and flags (`mg`),
// pipelined on one connection.

import { mgReplyLength, RawClient } from '../../replication/support';

/** Every key `lru_crawler metadump all` lists (URL-decoded); retried while another crawl runs (BUSY). */
export async function listKeys(port: number): Promise<Set<string>> {
  for (let attempt = 0; ; attempt++) {
    const c = await RawClient.connect(port);
    try {
      c.send('lru_crawler metadump all\r\n');
      // memcached 1.6 ends the dump with END (older ones with DONE); BUSY or ERROR when it cannot crawl now.
      const raw = (
        await c.read((b) => {
          const m = /(^|\n)(END|DONE|BUSY[^\r]*|ERROR[^\r]*)\r\n/.exec(b.toString('latin1'));
          return m === null ? null : m.index + m[0].length;
        }, 30_000)
      ).toString('latin1');
      if (/(^|\n)(END|DONE)\r\n$/.test(raw)) {
        const keys = new Set<string>();
        for (const m of raw.matchAll(/^key=(\S+)/gm)) keys.add(decodeURIComponent(m[1]));
        return keys;
      }
      if (attempt >= 20) throw new Error(`metadump on ${port}: ${raw.slice(-80)}`);
    } finally {
      c.close();
    }
    await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
  }
}

export interface HeldItem {
  value: string;
  flags: number;
}

/** Each key's item on one memcached (null: absent), read with pipelined `mg <key> v f`. */
export async function itemsOn(port: number, keys: readonly string[]): Promise<Map<string, HeldItem | null>> {
  const c = await RawClient.connect(port);
  try {
    c.send(keys.map((k) => `mg ${k} v f\r\n`).join(''));
    const out = new Map<string, HeldItem | null>();
    for (const key of keys) {
      const reply = (await c.read(mgReplyLength)).toString('latin1');
      if (reply.startsWith('EN')) {
        out.set(key, null);
        continue;
      }
      const m = /^VA \d+ ?(.*)\r\n([\s\S]*)\r\n$/.exec(reply);
      if (!m) throw new Error(`unexpected mg reply for ${key} on ${port}: ${JSON.stringify(reply)}`);
      out.set(key, { value: m[2], flags: Number(/\bf(\d+)/.exec(m[1])?.[1] ?? 0) });
    }
    return out;
  } finally {
    c.close();
  }
}
