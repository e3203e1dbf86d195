// The newcomer's default: with no backends configured, replicached starts a few
// memcached processes of its own on free loopback ports and stops them on exit.

import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface LocalMemcached {
  addresses: string[];
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

async function startOne(binary: string): Promise<{ child: ChildProcess; address: string }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    // memcached refuses to run as root unless told which user to become.
    const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
    const child = spawn(binary, ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '64', '-I', '2m', ...user], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    for (let i = 0; i < 50 && child.exitCode === null; i++) {
      const ready = await Promise.race([accepts(port), spawnError.then(() => false)]);
      if (ready) return { child, address: `127.0.0.1:${port}` };
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    const failure = await Promise.race([spawnError, new Promise<null>((r) => setTimeout(() => r(null), 10))]);
    if (failure !== null) {
      throw new Error(
        `cannot start ${binary}: ${failure.message}. Install it (Debian: apt-get install memcached) or pass --backends`,
      );
    }
  }
  throw new Error(`${binary} did not start listening on a free loopback port`);
}

export async function startLocalMemcached(count: number, binary = 'memcached'): Promise<LocalMemcached> {
  const started: ChildProcess[] = [];
  const stopAll = () => {
    for (const child of started) if (child.exitCode === null) child.kill('SIGTERM');
  };
  // Never leave memcached processes behind, even on an abrupt exit.
  process.once('exit', stopAll);
  try {
    const addresses: string[] = [];
    for (let i = 0; i < count; i++) {
      const { child, address } = await startOne(binary);
      started.push(child);
      addresses.push(address);
    }
    return {
      addresses,
      stop: async () => {
        const exits = started.map((c) =>
          c.exitCode === null ? new Promise((r) => c.once('exit', r)) : Promise.resolve(),
        );
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
