// The manual renders and its links resolve: markdownlint-cli2 (config in
// .markdownlint-cli2.jsonc: tables with a column count per row, in-page #fragments that
// exist, fenced code with a language, ...) over README.md, docs/*.md, bench/README.md and
// CHANGELOG.md; then every relative link must name a file that exists and, for a
// #fragment into another Markdown file, a heading there.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { anchors, links, manualFiles, read, ROOT } from './markdown';

/**
 * Linked from the manual, and written on other branches of the same release: the
 * install guide (packaging) and the trust protocol. A link to one of them is accepted
 * while the file is absent; once it exists it is checked like any other.
 */
const WRITTEN_ELSEWHERE = new Set(['docs/install.md', 'docs/trust.md']);

describe('the manual', () => {
  test('passes markdownlint-cli2, which lints every file of it', () => {
    const bin = path.join(ROOT, 'node_modules', 'markdownlint-cli2', 'markdownlint-cli2-bin.mjs');
    const run = spawnSync(process.execPath, [bin], { cwd: ROOT, encoding: 'utf8' });
    const output = `${run.stdout}${run.stderr}`;
    expect(run.status, output).toBe(0);
    // The lint's own file list (the config's globs), so that a new doc cannot escape it.
    expect(Number(/Linting: (\d+) file/.exec(output)?.[1]), output).toBe(manualFiles().length);
  });

  test.each(manualFiles())('%s: every relative link resolves', (file) => {
    const problems: string[] = [];
    for (const { target, line } of links(read(file))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue; // URLs; in-page anchors are markdownlint's
      const [filePart, fragment] = target.split('#', 2);
      const resolved = path.normalize(path.join(path.dirname(file), decodeURIComponent(filePart)));
      if (resolved.startsWith('..')) {
        problems.push(`${file}:${line}: ${target} leaves the repository`);
        continue;
      }
      if (!existsSync(path.join(ROOT, resolved))) {
        if (!WRITTEN_ELSEWHERE.has(resolved)) problems.push(`${file}:${line}: ${target}: no file ${resolved}`);
        continue;
      }
      if (fragment !== undefined && resolved.endsWith('.md') && !anchors(read(resolved)).has(fragment)) {
        problems.push(`${file}:${line}: ${target}: no heading #${fragment} in ${resolved}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe('the link checker itself', () => {
  test('finds links, wrapped or not, and skips code', () => {
    const text = 'See [a](x.md#b) and [wrapped\ntext](y.md).\n`[c](no.md)`\n```sh\n[d](no.md)\n```\n';
    expect(links(text)).toEqual([
      { target: 'x.md#b', line: 1 },
      { target: 'y.md', line: 1 },
    ]);
  });

  test("anchors are GitHub's", () => {
    expect([...anchors('# A b\n## `npm test`\n## `.ci/run`\n## php.ini\n## A b\n')]).toEqual(['a-b', 'npm-test', 'cirun', 'phpini', 'a-b-1']);
  });
});
