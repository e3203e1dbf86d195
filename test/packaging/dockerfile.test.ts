// The Dockerfile, where no container engine runs: scripts/check-dockerfile.sh carries out its
// instructions in a clean directory (the install lines included) and then its documented
// `docker run` line, down to the HEALTHCHECK. Here it runs offline, on a copy of the npm cache
// that `npm install` filled, with this machine's npm standing in for the image's (run the script
// by hand for the image's own npm version, fetched from the registry).

import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { expect, test } from 'vitest';

const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'check-dockerfile.sh');

test('the image builds, and its documented docker run line serves, passes its HEALTHCHECK and stops on SIGTERM', async () => {
  const npmVersion = execFileSync('npm', ['--version'], { encoding: 'utf8' }).trim();
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const env = { ...process.env, OFFLINE: '1', IMAGE_NPM: npmVersion };
    // On a timeout bash gets SIGTERM, and its trap stops the memcached and replicached it started.
    execFile('bash', [SCRIPT], { env, timeout: 170_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, output: stdout + stderr }),
    );
  });
  expect(code, output).toBe(0);
  expect(output).toContain('Dockerfile check passed');
}, 180_000);
