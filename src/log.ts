// Structured logs: one JSON object per line on stdout, via pino. What is
// logged at info: start and stop, each backend state change, each config
// reload and each resync; never anything per request (that is debug/trace).

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
