// `stats <group>` in both protocols: which figures answer each group, in memcached 1.6.18's
// reply format (proto_text.c process_stat, proto_bin.c process_bin_stat).
//
//   group                       answered with
//   (none)                      the proxy's own figures
//   reset                       RESET (binary: an empty STAT end); the proxy's counts restart
//   settings                    the proxy's own settings
//   locks                       the PHP session locks seen (src/locks/tracker.ts): totals, then the
//                               sessions waited on longest in the last minute; ours, memcached has none
//   items, slabs, sizes         the live backends' tables, merged (stats-merge.ts);
//                               SERVER_ERROR backend unavailable / 0x0086 when none answered
//   detail on|off|dump          OK, OK, END: the proxy keeps no per-prefix figures
//   conns, extstore (text)      END: no table (the proxy keeps no connection table, no extstore)
//   cachedump <class> <limit>   END, an empty dump: keys are not listed through the proxy (its
//     (text)                    arguments are checked as memcached checks them; clients such as
//                               pymemcache expect a table here, not an error)
//   sizes_enable|sizes_disable  refused in memcached's form for it (STAT sizes_status error);
//                               like memcached, with no END
//   anything else               ERROR / binary "Not found", as memcached

import type { BinaryRequestOf } from '../protocol/binary/parser';
import * as bin from '../protocol/binary/encoder';
import { Status } from '../protocol/binary/opcodes';
import { encodeStats, END, ERROR, OK, SERVER_ERROR_UNAVAILABLE } from '../protocol/text/encoder';
import { safeStrtoul } from '../protocol/text/numbers';
import type { ServerContext } from './context';
import { mergeStats } from './stats-merge';

const line = (text: string): Buffer => Buffer.from(`${text}\r\n`, 'latin1');

const RESET = line('RESET');
const DETAIL_USAGE = line('CLIENT_ERROR usage: stats detail on|off|dump');
/** memcached's MAX_NUMBER_OF_SLAB_CLASSES. */
const SLAB_CLASSES = 64n;
const BACKEND_GROUPS = new Set(['items', 'slabs', 'sizes']);
/** memcached's answer to sizes_enable when it cannot track sizes, with our reason. */
const SIZES_REFUSED: Array<[string, string]> = [
  ['sizes_status', 'error'],
  ['sizes_error', 'set_on_each_backend'],
];

type Pairs = Array<[string, string | number | bigint]>;

/** The text reply to `stats <args>`. */
export function textStats(args: readonly string[], ctx: ServerContext): Buffer | Promise<Buffer> {
  if (args.length === 0) return encodeStats(ctx.stats());
  const group = args[0];
  switch (group) {
    case 'reset':
      ctx.resetStats();
      return RESET;
    case 'settings':
      return encodeStats(ctx.settings());
    case 'locks':
      return encodeStats(ctx.lockStats());
    case 'detail':
      if (args[1] === 'on' || args[1] === 'off') return OK;
      return args[1] === 'dump' ? END : DETAIL_USAGE;
    case 'conns':
    case 'extstore':
      return END;
    case 'cachedump': {
      if (args.length < 3) return line('CLIENT_ERROR bad command line');
      const id = safeStrtoul(args[1]);
      if (id === null || safeStrtoul(args[2]) === null) return line('CLIENT_ERROR bad command line format');
      return (id & 0xffffffffn) >= SLAB_CLASSES ? line('CLIENT_ERROR Illegal slab id') : END;
    }
    case 'sizes_enable':
    case 'sizes_disable':
      return Buffer.from(SIZES_REFUSED.map(([k, v]) => `STAT ${k} ${v}\r\n`).join(''), 'latin1');
  }
  if (!BACKEND_GROUPS.has(group)) return ERROR;
  return ctx.backendStats(group).then((answers) => (answers.length === 0 ? SERVER_ERROR_UNAVAILABLE : encodeStats(mergeStats(answers))));
}

/** The binary replies to STAT with a group key: STAT packets, then an empty one, or an error. */
export function binaryStats(req: BinaryRequestOf<'stat'>, ctx: ServerContext): Buffer[] | Promise<Buffer[]> {
  const { group } = req;
  const listing = (pairs: Pairs, end = true): Buffer[] => [
    ...pairs.map(([k, v]) => bin.encodeStat(req, k, String(v))),
    ...(end ? [bin.encodeStatEnd(req)] : []),
  ];
  // memcached compares these by prefix (strncmp), the others whole.
  if (group === '') return listing(ctx.stats());
  if (group.startsWith('reset')) {
    ctx.resetStats();
    return listing([]);
  }
  if (group.startsWith('settings')) return listing(ctx.settings());
  if (group === 'locks') return listing(ctx.lockStats());
  if (group.startsWith('detail')) {
    const sub = group.slice('detail'.length);
    if (sub.startsWith(' dump')) return listing([['detailed', 'END\r\n']]);
    if (sub.startsWith(' on') || sub.startsWith(' off')) return listing([]);
    return [bin.encodeError(req.opcode, req.opaque, Status.KeyNotFound)];
  }
  if (group === 'sizes_enable' || group === 'sizes_disable') return listing(SIZES_REFUSED, false);
  if (!BACKEND_GROUPS.has(group)) return [bin.encodeError(req.opcode, req.opaque, Status.KeyNotFound)];
  return ctx.backendStats(group).then((answers) =>
    answers.length === 0 ? [bin.encodeError(req.opcode, req.opaque, Status.TemporaryFailure)] : listing(mergeStats(answers)),
  );
}
