import type { ChildProcess } from 'node:child_process';

/** Calls `cond` every `intervalMs` until it returns true; throws `message` once `timeoutMs` have passed. */
export async function pollUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs: number,
  message = 'condition not met in time',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(message);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Resolves once `ready(output())` holds, checked whenever `child` writes to stdout or stderr
 * (`output` is everything it wrote so far). Rejects, with the output, if the child exits
 * first. No deadline of its own: the test's or hook's timeout bounds the wait, so a start
 * that is slow on a loaded machine is waited for, and one that fails is reported at once.
 */
export function waitForOutput(child: ChildProcess, output: () => string, ready: (output: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (): void => {
      child.stdout?.off('data', check);
      child.stderr?.off('data', check);
      child.off('close', closed);
    };
    const check = (): void => {
      if (!ready(output())) return;
      settle();
      resolve();
    };
    // 'close' comes after 'exit' once stdout and stderr are drained: the last lines are in.
    const closed = (code: number | null, signal: NodeJS.Signals | null): void => {
      settle();
      if (ready(output())) resolve();
      else reject(new Error(`process ${child.pid} exited (${signal ?? `code ${code}`}) before it was ready:\n${output()}`));
    };
    child.stdout?.on('data', check);
    child.stderr?.on('data', check);
    child.once('close', closed);
    check();
  });
}
