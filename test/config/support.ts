// What the config tests share: a run's config from flags and an optional YAML file, and the
// message of the ConfigError a step throws.

import { ConfigError, loadConfig, parseArgs, type Config } from '../../src/config';

/** The config a run with these flags gets; `yaml`: the file's text, as if `--config r.yaml` were given. */
export function load(argv: string[], yaml?: string): Config {
  const args = parseArgs(yaml === undefined ? argv : ['--config', 'r.yaml', ...argv]);
  if (args.kind !== 'run') throw new Error(`expected a run, got ${args.kind}`);
  return loadConfig(args, () => yaml ?? '');
}

/** The message of the ConfigError `fn` throws; anything else (or nothing) fails the test. */
export function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
}
