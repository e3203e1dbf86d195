// The binary protocol side of a client session (php-memcached's default for
// sessions). Same router as the text side; quiet requests answer only on
// failure (GETQ only on a hit), and since replies leave in request order a
// NOOP naturally comes after everything pending before it.
//
// SASL (sasl-auth.ts): without client SASL configured, SASL requests are answered
// 0x81 "Unknown command", as memcached without -S does. With it, a client must
// authenticate before any request but VERSION and the SASL ones; the first other
// request is answered "Auth failure." and the connection closes, and requests the
// client pipelined after it are never run.

import { BinaryParser, type BinaryRequest } from '../protocol/binary/parser';
import * as bin from '../protocol/binary/encoder';
import { Opcode, Status } from '../protocol/binary/opcodes';
import type { Router } from '../protocol/types';
import type { ServerContext } from './context';
import { CLOSE, type SlotResult } from './ordered-replies';
import { ParsedProtocol } from './parsed-protocol';
import { plainAuthenticates, SASL_MECHANISMS } from './sasl-auth';
import { binaryStats } from './stats-command';

/** Binary INCR/DECR expiration meaning "fail if the key is missing" instead of creating it. */
const NO_CREATE = 0xffffffff;

/** What memcached -S answers before authentication: these opcodes, errors included, and frame errors it finds before asking. */
function allowedBeforeAuth(req: BinaryRequest): boolean {
  switch (req.opcode) {
    case Opcode.SaslListMechs:
    case Opcode.SaslAuth:
    case Opcode.SaslStep:
    case Opcode.Version:
      return true;
  }
  return req.kind === 'error' && req.close && (req.silent === true || req.status === Status.UnknownCommand);
}

export class BinaryProtocol extends ParsedProtocol<BinaryRequest> {
  private readonly router: Router;
  /** Client SASL was on when the connection opened: a reload turning it on or off applies to new connections. */
  private readonly saslRequired: boolean;
  /** SASL_AUTH succeeded (and no later one failed). */
  private authenticated = false;
  /** A request was refused for want of authentication: nothing after it runs. */
  private refused = false;

  constructor(private readonly ctx: ServerContext) {
    super(new BinaryParser(ctx.limits), (closes) => ctx.countProtocolError('binary', closes));
    this.router = ctx.connectionRouter();
    this.saslRequired = ctx.clientSasl !== null;
  }

  protected run(req: BinaryRequest, done: (r: SlotResult) => void): void {
    const router = this.router;
    const started = performance.now();
    if (this.refused) {
      done(CLOSE);
      return;
    }
    // The user of the moment (a reload may change it); null: SASL off for this connection.
    const sasl = this.saslRequired ? this.ctx.clientSasl : null;
    if (sasl !== null && !this.authenticated && !allowedBeforeAuth(req)) {
      this.refused = true;
      this.stopReading();
      done({ final: bin.encodeError(req.opcode, req.opaque, Status.AuthError) });
      return;
    }
    if ('key' in req && !this.ctx.canCarryKey(req.key)) {
      // A key no backend could store intact is refused, never mangled.
      done(bin.encodeError(req.opcode, req.opaque, Status.InvalidArguments));
      return;
    }
    switch (req.kind) {
      case 'get':
        void router.get(req.key, req.touch).then((o) => {
          this.ctx.countCommand(req.touch === undefined ? 'get' : 'gat', o.status, started);
          if (o.status === 'unavailable') done(CLOSE);
          else if (o.status === 'hit') done(bin.encodeGetHit(req, o.item));
          else done(req.quiet ? null : bin.encodeGetMiss(req));
        });
        return;
      case 'store':
        void router.store(req).then((o) => {
          this.ctx.countCommand(req.mode, o.status, started);
          done(req.quiet && o.status === 'stored' ? null : bin.encodeStoreOutcome(req, o));
        });
        return;
      case 'delete':
        void router.delete(req.key, req.cas).then((o) => {
          this.ctx.countCommand('delete', o.status, started);
          done(req.quiet && o.status === 'deleted' ? null : bin.encodeDeleteOutcome(req, o));
        });
        return;
      case 'arith': {
        const create = req.exptime === NO_CREATE ? undefined : { initial: req.initial, exptime: req.exptime };
        void router.arith({ kind: req.op, key: req.key, delta: req.delta, create }).then((o) => {
          this.ctx.countCommand(req.op, o.status, started);
          done(req.quiet && o.status === 'ok' ? null : bin.encodeArithOutcome(req, o));
        });
        return;
      }
      case 'touch':
        // memcached's TOUCH reply carries the item's flags and CAS: a gat gives both.
        void router.get(req.key, req.exptime).then((o) => {
          this.ctx.countCommand('touch', o.status, started);
          done(o.status === 'unavailable' ? CLOSE : bin.encodeTouchOutcome(req, o));
        });
        return;
      case 'flush':
        if (!this.ctx.allowFlushAll) {
          // memcached -F answers FLUSH and FLUSHQ alike with "Auth failure.".
          done(bin.encodeError(req.opcode, req.opaque, Status.AuthError));
          return;
        }
        void router.flush(req.delay).then((o) => {
          this.ctx.countCommand('flush_all', o.status, started);
          done(req.quiet && o.status === 'ok' ? null : bin.encodeFlushOutcome(req, o));
        });
        return;
      case 'noop':
        done(bin.encodeEmptySuccess(req));
        return;
      case 'version':
        done(bin.encodeVersion(req, this.ctx.version));
        return;
      case 'stat':
        void Promise.resolve(binaryStats(req, this.ctx)).then(done);
        return;
      case 'quit':
        done(req.quiet ? CLOSE : { final: bin.encodeEmptySuccess(req) });
        return;
      case 'sasl_list':
        done(sasl === null ? bin.encodeError(req.opcode, req.opaque, Status.UnknownCommand) : bin.encodeSaslReply(req, SASL_MECHANISMS));
        return;
      case 'sasl':
        if (sasl === null) {
          done(bin.encodeError(req.opcode, req.opaque, Status.UnknownCommand));
          return;
        }
        this.authenticated = !req.step && plainAuthenticates(req.mech, req.payload, sasl);
        done(this.authenticated ? bin.encodeSaslReply(req, 'Authenticated') : bin.encodeError(req.opcode, req.opaque, Status.AuthError));
        return;
      case 'error':
        if (req.silent) done(CLOSE);
        else {
          const packet = bin.encodeError(req.opcode, req.opaque, req.status);
          // As memcached: a SET that failed must not leave the old value to be read as current.
          if (req.dropStale) void router.delete(req.dropStale, 0n).then(() => done(packet));
          else done(req.close ? { final: packet } : packet);
        }
        return;
    }
  }
}
