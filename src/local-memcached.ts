// The newcomer's default: with no backends configured, replicached starts a few
// memcached processes of its own on free loopback ports and stops them on exit.

import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface LocalMemcached {
  addresses: string[];
  /** Their process ids, in the order of `addresses` (the demo says: kill -9 one of them). */
  pids: number[];
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** memcached's arguments for a loopback port (also what to run to bring one back by hand). */
function memcachedArgs(port: number): string[] {
  // memcached refuses to run as root unless told which user to become.
  const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  return ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '64', '-I', '2m', ...user];
}

function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

async function startOne(binary: string): Promise<{ child: ChildProcess; port: number }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = spawn(binary, memcachedArgs(port), { stdio: ['ignore', 'ignore', 'inherit'] });
    const spawnFailure: { error?: Error } = {};
    child.once('error', (err) => (spawnFailure.error = err));
    // Until it accepts, however long a loaded machine takes, or exits (someone took the port first).
    while (running(child) && spawnFailure.error === undefined) {
      if (await accepts(port)) return { child, port };
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    if (spawnFailure.error !== undefined) {
      throw new Error(
        `cannot start ${binary}: ${spawnFailure.error.message}. Install it (Debian: apt-get install memcached) or pass --backends`,
      );
    }
  }
  throw new Error(`${binary} did not start listening on a free loopback port`);
}

/** A local memcached that died while replicached ran (a user trying failover, say). */
export interface LocalExit {
  address: string;
  /** "signal SIGKILL", "code 1" */
  reason: string;
  /** The command that starts an empty one on the same port, for replicached to probe back and resync. */
  restart: string;
}

export async function startLocalMemcached(
  count: number,
  onUnexpectedExit: (exit: LocalExit) => void,
  binary = 'memcached',
): Promise<LocalMemcached> {
  const started: ChildProcess[] = [];
  let stopping = false;
  const stopAll = () => {
    stopping = true;
    for (const child of started) if (running(child)) child.kill('SIGTERM');
  };
  // Never leave memcached processes behind, even on an abrupt exit.
  process.once('exit', stopAll);
  try {
    const addresses: string[] = [];
    const pids: number[] = [];
    for (let i = 0; i < count; i++) {
      const { child, port } = await startOne(binary);
      const address = `127.0.0.1:${port}`;
      child.once('exit', (code, signal) => {
        if (stopping) return;
        const restart = [binary, ...memcachedArgs(port)].join(' ');
        onUnexpectedExit({ address, reason: signal === null ? `code ${code}` : `signal ${signal}`, restart });
      });
      started.push(child);
      addresses.push(address);
      pids.push(child.pid!);
    }
    return {
      addresses,
      pids,
      stop: async () => {
        const exits = started.map((c) => (running(c) ? new Promise((r) => c.once('exit', r)) : Promise.resolve()));
        stopAll();
        await Promise.all(exits);
        process.off('exit', stopAll);
      },
    };
  } catch (err) {
    stopAll();
    throw err;
  }
}
