// Per-key ordering for one replicached process: requests for one key take
// effect in the order the process received them, across all client
// connections, follow-up steps included (a copy to the other members, a
// verification, a read repair). memcached applies one key's commands one at a
// time; a replicating proxy must not let the next request for a key overtake
// the steps of the one before it on some member.
//
//   key k:  [read][read] [write] [read]
//            └ run together ┘  waits for both reads; the last read waits for the write
//
// Reads of a key may run together (they change nothing a reader of the same key
// could see; read repair only fills a member that missed). A write waits until
// every earlier operation on the key has finished, and everything after it waits
// for the write. A key with nothing queued costs one Map entry for the time its
// operation runs; nothing is allocated for keys at rest.

export type Access = 'read' | 'write';

/** Called when the turn comes; the operation calls `leave` exactly once, when every step of it has finished. */
export type Enter = (leave: () => void) => void;

interface Waiting {
  access: Access;
  enter: Enter;
}

/** One key's line: operations running now, and those waiting behind them in arrival order. */
interface Line {
  running: number;
  writing: boolean;
  waiting: Waiting[];
}

export class KeySequencer {
  private readonly lines = new Map<string, Line>();

  /** Keys with an operation running or waiting (for tests and stats). */
  get activeKeys(): number {
    return this.lines.size;
  }

  /**
   * Queues an operation on `key` behind the ones that arrived before it. `enter`
   * runs at once when nothing is in the way, else when the turn comes.
   */
  enter(key: Buffer, access: Access, enter: Enter): void {
    const name = key.toString('latin1'); // one char per byte: distinct keys stay distinct
    let line = this.lines.get(name);
    if (line === undefined) {
      line = { running: 0, writing: false, waiting: [] };
      this.lines.set(name, line);
    }
    if (line.waiting.length === 0 && this.mayStart(line, access)) this.start(name, line, access, enter);
    else line.waiting.push({ access, enter });
  }

  private mayStart(line: Line, access: Access): boolean {
    return access === 'read' ? !line.writing : line.running === 0;
  }

  private start(name: string, line: Line, access: Access, enter: Enter): void {
    line.running++;
    if (access === 'write') line.writing = true;
    let left = false;
    enter(() => {
      if (left) return;
      left = true;
      this.leave(name, line, access);
    });
  }

  private leave(name: string, line: Line, access: Access): void {
    line.running--;
    if (access === 'write') line.writing = false;
    // Start waiting operations in order, as far as the rules allow: a run of reads together, or one write.
    while (line.waiting.length > 0 && this.mayStart(line, line.waiting[0].access)) {
      const next = line.waiting.shift()!;
      this.start(name, line, next.access, next.enter);
    }
    if (line.running === 0 && line.waiting.length === 0 && this.lines.get(name) === line) this.lines.delete(name);
  }
}
