import { describe, expect, test } from 'vitest';
import { KeySequencer, type Access } from '../../src/routing/key-sequencer';

const k = (s: string) => Buffer.from(s);

/** Enters operations and records when each starts; each is left by hand. */
function harness() {
  const seq = new KeySequencer();
  const started: string[] = [];
  const leaves = new Map<string, () => void>();
  const enter = (name: string, key: string, access: Access) =>
    seq.enter(k(key), access, (leave) => {
      started.push(name);
      leaves.set(name, leave);
    });
  const leave = (name: string) => leaves.get(name)!();
  return { seq, started, enter, leave };
}

describe('KeySequencer', () => {
  test('reads of one key run together; a write waits for them, and later reads wait for the write', () => {
    const { started, enter, leave } = harness();
    enter('r1', 'a', 'read');
    enter('r2', 'a', 'read');
    enter('w', 'a', 'write');
    enter('r3', 'a', 'read');
    expect(started).toEqual(['r1', 'r2']);
    leave('r1');
    expect(started).toEqual(['r1', 'r2']);
    leave('r2');
    expect(started).toEqual(['r1', 'r2', 'w']);
    leave('w');
    expect(started).toEqual(['r1', 'r2', 'w', 'r3']);
  });

  test('writes of one key run one at a time, in arrival order', () => {
    const { started, enter, leave } = harness();
    enter('w1', 'a', 'write');
    enter('w2', 'a', 'write');
    enter('w3', 'a', 'write');
    expect(started).toEqual(['w1']);
    leave('w1');
    leave('w2');
    expect(started).toEqual(['w1', 'w2', 'w3']);
  });

  test('a read queued behind a write is not overtaken by a later read', () => {
    const { started, enter, leave } = harness();
    enter('w', 'a', 'write');
    enter('r1', 'a', 'read');
    enter('w2', 'a', 'write');
    enter('r2', 'a', 'read');
    leave('w');
    expect(started).toEqual(['w', 'r1']);
    leave('r1');
    expect(started).toEqual(['w', 'r1', 'w2']);
  });

  test('other keys are independent, and a key at rest holds nothing', () => {
    const { seq, started, enter, leave } = harness();
    enter('wa', 'a', 'write');
    enter('wb', 'b', 'write');
    expect(started).toEqual(['wa', 'wb']);
    expect(seq.activeKeys).toBe(2);
    leave('wa');
    leave('wb');
    expect(seq.activeKeys).toBe(0);
  });

  test('keys that differ only in bytes above 0x7f stay distinct', () => {
    const { started, enter } = harness();
    enter('x', '\u00e9', 'write');
    enter('y', '\u00e8', 'write');
    expect(started).toEqual(['x', 'y']);
  });

  test('leaving twice counts once', () => {
    const { started, enter, leave } = harness();
    enter('w1', 'a', 'write');
    enter('w2', 'a', 'write');
    enter('w3', 'a', 'write');
    leave('w1');
    leave('w1');
    expect(started).toEqual(['w1', 'w2']);
  });
});
