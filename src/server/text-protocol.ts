// The text protocol side of a client session: parsed requests go to the
// router, outcomes are encoded byte-exact. A read that no replica could answer
// closes the connection instead of answering a miss (see README: "never a false miss").

import { TextParser, type TextRequest } from '../protocol/text/parser';
import * as reply from '../protocol/text/encoder';
import type { GetOutcome, Router } from '../protocol/types';
import type { ServerContext } from './context';
import { CLOSE, type SlotResult } from './ordered-replies';
import { ParsedProtocol } from './parsed-protocol';
import { textStats } from './stats-command';

// What memcached itself answers when started with -F (flush_all disabled).
const FLUSH_DISABLED = Buffer.from('CLIENT_ERROR flush_all not allowed\r\n');

export class TextProtocol extends ParsedProtocol<TextRequest> {
  private readonly router: Router;

  constructor(private readonly ctx: ServerContext) {
    super(new TextParser(ctx.limits), (closes) => ctx.countProtocolError('text', closes));
    this.router = ctx.connectionRouter();
  }

  protected run(req: TextRequest, done: (r: SlotResult) => void): void {
    const router = this.router;
    const started = performance.now();
    switch (req.kind) {
      case 'get': {
        const command = (req.touch === undefined ? 'get' : 'gat') + (req.withCas ? 's' : '');
        void Promise.all(req.keys.map((k) => router.get(k, req.touch))).then((outcomes) =>
          done(this.encodeGet(command, req.keys, outcomes, req.withCas, started)),
        );
        return;
      }
      case 'store':
        void router.store(req).then((o) => {
          this.ctx.countCommand(req.mode, o.status, started);
          done(req.noreply ? null : reply.encodeStoreOutcome(o));
        });
        return;
      case 'delete':
        void router.delete(req.key, 0n).then((o) => {
          this.ctx.countCommand('delete', o.status, started);
          done(req.noreply ? null : reply.encodeDeleteOutcome(o));
        });
        return;
      case 'touch':
        void router.touch(req.key, req.exptime).then((o) => {
          this.ctx.countCommand('touch', o.status, started);
          done(req.noreply ? null : reply.encodeTouchOutcome(o));
        });
        return;
      case 'arith':
        void router.arith({ kind: req.op, key: req.key, delta: req.delta }).then((o) => {
          this.ctx.countCommand(req.op, o.status, started);
          done(req.noreply ? null : reply.encodeArithOutcome(o));
        });
        return;
      case 'flush_all':
        if (!this.ctx.allowFlushAll) {
          done(req.noreply ? null : FLUSH_DISABLED);
          return;
        }
        void router.flush(req.delay).then((o) => {
          this.ctx.countCommand('flush_all', o.status, started);
          done(req.noreply ? null : reply.encodeFlushOutcome(o));
        });
        return;
      case 'version':
        done(reply.encodeVersion(this.ctx.version));
        return;
      case 'verbosity':
        done(req.noreply ? null : reply.OK);
        return;
      case 'stats':
        void Promise.resolve(textStats(req.args, this.ctx)).then(done);
        return;
      case 'answer':
        done(req.reply);
        return;
      case 'quit':
        done(CLOSE);
        return;
      case 'too_large': {
        const answer = req.noreply ? null : reply.SERVER_ERROR_TOO_LARGE;
        if (!req.dropStale) {
          done(answer);
          return;
        }
        // As memcached: a set that failed must not leave the old value to be read as current.
        void router.delete(req.key, 0n).then(() => done(answer));
        return;
      }
      case 'error':
        done(req.close ? { final: req.reply } : req.reply);
        return;
    }
  }

  private encodeGet(command: string, keys: Buffer[], outcomes: GetOutcome[], withCas: boolean, started: number): SlotResult {
    const out: Buffer[] = [];
    for (let i = 0; i < outcomes.length; i++) {
      const o = outcomes[i];
      this.ctx.countCommand(command, o.status, started);
      if (o.status === 'unavailable') return CLOSE;
      if (o.status === 'hit') out.push(...reply.encodeValue(keys[i], o.item, withCas));
    }
    out.push(reply.END);
    return out;
  }
}
