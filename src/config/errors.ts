// A configuration problem, named the way the user wrote it: the flag
// (`--replicas`) or the file and the field path (`replicached.yaml: backends[1].address`).

export class ConfigError extends Error {
  /** The flag (`--replicas`) or field path (`backends[1].address`) at fault. */
  readonly field: string;
  /** The config file the field came from; null for a command-line flag. */
  readonly source: string | null;

  constructor(field: string, problem: string, source: string | null = null) {
    super(source === null ? `${field}: ${problem}` : `${source}: ${field}: ${problem}`);
    this.name = 'ConfigError';
    this.field = field;
    this.source = source;
  }
}
