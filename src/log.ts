// Structured logs: one JSON object per line on stdout, via pino. What is
// logged at info: start and stop (and the drain), readiness, each backend state
// change, each config reload and each resync. debug adds the decisions behind
// them: each backend's first answer, state changes with reason and duration,
// every setting a reload changed (before and after), resync progress. Nothing
// is logged per request at any level, and never a key or a value.

import pino, { type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './config/types';

export type { Logger };

/**
 * The process's logger. `destination` defaults to stdout; tests pass a stream.
 * Change the level later (on reload) with `logger.level = 'debug'`.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name: 'replicached',
    level,
    timestamp: pino.stdTimeFunctions.isoTime,
    // "level":"info" rather than pino's numeric 30: readable without pino-pretty.
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
