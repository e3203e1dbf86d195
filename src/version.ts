// replicached's own version, from package.json (one directory above src/ and dist/).

import { readFileSync } from 'node:fs';
import path from 'node:path';

export const VERSION: string = (JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
