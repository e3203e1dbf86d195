// A reply to a request that was out when a failure of its backend was seen counts as failed
// (TrustAgent guard). A restarted memcached drops every connection, and each sidecar reports
// the drop as a failure; a request that went out on a connection opened to the new, empty
// process just before the drop was read here would otherwise bring back that process's miss as
// the member's answer, and a read would serve it as the key gone.

import { expect, test } from 'vitest';
import { FakeNode, agentOver } from './support';

test("a reply that comes back after its backend's failure was seen counts as failed; one from another backend does not", async () => {
  const [X, Y, S] = ['x:1', 'y:1', 's:1'].map((a) => new FakeNode(a));
  const { agent, state } = agentOver('meanwhile', [X, Y, S]);
  for (const n of [X, Y, S]) state.roundDone(n.address, 0, 0, []);
  const [toX, toS] = [agent.wrap(X as never), agent.wrap(S as never)];
  const probe = Buffer.from('k');
  expect((await toX.get(probe)).status).toBe('miss');

  // Both requests are out (their replies held) when X's failure is seen.
  let release = () => {};
  const held = new Promise<void>((r) => (release = r));
  for (const n of [X, S]) {
    const get = n.get.bind(n);
    n.get = async (key) => {
      await held;
      return get(key);
    };
  }
  const [fromX, fromS] = [toX.get(probe), toS.get(probe)];
  agent.failed(X.address);
  release();
  expect(await fromX).toMatchObject({ status: 'failed', reason: 'backend failed while the request was out' });
  expect((await fromS).status).toBe('miss');
});
