// RSS of replicached holding many idle client connections (issue 6: <= 100 MB at 5,000).
//   node bench/dist/idle.js [--connections 5000]
// Opens the connections, sends one `version` on each (so each session is fully set up),
// waits, and prints VmRSS before, with the connections, and VmHWM.

import net from 'node:net';
import { numberOption } from './args';
import { HOST, sampleProc, sleep } from './proc';
import { startStack } from './targets';

const MB = 1048576;

async function open(port: number): Promise<net.Socket> {
  const s = net.connect(port, HOST);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.write('version\r\n');
  await new Promise<void>((resolve) => s.once('data', () => resolve()));
  return s;
}

async function main(): Promise<void> {
  const count = numberOption(process.argv.slice(2), 'connections', 5000);
  const stack = await startStack({ only: ['replicached'] });
  const target = stack.targets[0];
  const sockets: net.Socket[] = [];
  try {
    await sleep(1000);
    const before = sampleProc(target.proc.pid);
    for (let i = 0; i < count; i += 250) {
      sockets.push(...(await Promise.all(Array.from({ length: Math.min(250, count - i) }, () => open(target.port)))));
    }
    await sleep(3000);
    const held = sampleProc(target.proc.pid);
    console.log(`| idle client connections | RSS before MB | RSS with them MB | per connection KB | peak RSS (VmHWM) MB |`);
    console.log(`|---:|---:|---:|---:|---:|`);
    console.log(
      `| ${count} | ${(before.rssBytes / MB).toFixed(1)} | ${(held.rssBytes / MB).toFixed(1)} | ` +
        `${((held.rssBytes - before.rssBytes) / count / 1024).toFixed(1)} | ${(held.hwmBytes / MB).toFixed(1)} |`,
    );
  } finally {
    for (const s of sockets) s.destroy();
    await stack.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
