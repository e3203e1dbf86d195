// SASL PLAIN checking for client SASL (RFC 4616 messages: [authzid] NUL authcid NUL passwd).

import { describe, expect, it } from 'vitest';
import { plainAuthenticates } from '../../src/server/sasl-auth';

const USER = { username: 'app', password: 'pässwörd with spaces' };
const msg = (authzid: string, user: string, password: string) => Buffer.from(`${authzid}\0${user}\0${password}`, 'utf8');
const PLAIN = Buffer.from('PLAIN');

describe('plainAuthenticates', () => {
  it.each([
    ['the user and password, no authzid', PLAIN, msg('', 'app', USER.password), true],
    ['authzid equal to the user', PLAIN, msg('app', 'app', USER.password), true],
    ['another authzid (proxy authorization)', PLAIN, msg('admin', 'app', USER.password), false],
    ['wrong password', PLAIN, msg('', 'app', 'pässwörd'), false],
    ['password with a trailing byte', PLAIN, msg('', 'app', `${USER.password}x`), false],
    ['wrong user', PLAIN, msg('', 'ap', USER.password), false],
    ['user and password shifted across the NUL', PLAIN, msg('', 'app\0pässwörd', ' with spaces'), false],
    ['one NUL only', PLAIN, Buffer.from(`app\0${USER.password}`), false],
    ['empty', PLAIN, Buffer.alloc(0), false],
    ['another mechanism', Buffer.from('CRAM-MD5'), msg('', 'app', USER.password), false],
    ['lower-case mechanism', Buffer.from('plain'), msg('', 'app', USER.password), false],
  ])('%s', (_name, mech, payload, expected) => {
    expect(plainAuthenticates(mech, payload, USER)).toBe(expected);
  });
});
