// limits.clientIdleTimeoutMs: a client that sends nothing for that long is
// closed; one that keeps talking is not. Off (0) by default.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type Cluster } from '../helpers/cluster';

const IDLE_MS = 400;

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.on('error', reject);
  });
}

const closedWithin = (socket: net.Socket, ms: number) =>
  new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });

describe('idle client timeout', () => {
  let cluster: Cluster;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'replicached-idle-'));
    const file = path.join(dir, 'replicached.yaml');
    writeFileSync(file, `limits:\n  clientIdleTimeoutMs: ${IDLE_MS}\n`);
    cluster = await startCluster({ backends: 1, args: ['--config', file] });
  });
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('an idle client is closed after the timeout', async () => {
    const socket = await connect(cluster.proxy.port);
    expect(await closedWithin(socket, IDLE_MS * 5)).toBe(true);
  });

  test('a client that keeps talking stays open', async () => {
    const socket = await connect(cluster.proxy.port);
    const closed = closedWithin(socket, IDLE_MS * 3);
    const chatter = setInterval(() => socket.write('version\r\n'), IDLE_MS / 4);
    try {
      expect(await closed).toBe(false);
    } finally {
      clearInterval(chatter);
      socket.destroy();
    }
  });
});
