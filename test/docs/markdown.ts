// Small Markdown readers for the documentation tests: the manual's files, their sections,
// fenced blocks, tables, links and heading anchors. Only what our own documents use.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.join(__dirname, '..', '..');

/** The manual: README.md, docs/*.md, bench/README.md, and CHANGELOG.md when it exists (paths from the root). */
export function manualFiles(): string[] {
  const docs = existsSync(path.join(ROOT, 'docs'))
    ? readdirSync(path.join(ROOT, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .sort()
        .map((f) => `docs/${f}`)
    : [];
  return ['README.md', ...docs, 'bench/README.md', 'CHANGELOG.md'].filter((f) => existsSync(path.join(ROOT, f)));
}

export function read(file: string): string {
  return readFileSync(path.join(ROOT, file), 'utf8');
}

/** The text with fenced code blocks blanked out (line count kept), so prose checks skip code. */
export function withoutFences(text: string): string {
  let inFence = false;
  return text
    .split('\n')
    .map((line) => {
      if (/^\s*(```|~~~)/.test(line)) {
        inFence = !inFence;
        return '';
      }
      return inFence ? '' : line;
    })
    .join('\n');
}

/** The body of the section under `heading` (e.g. "## Two commands"), up to the next heading of the same or a higher level. */
export function section(text: string, heading: string): string {
  const level = /^#+/.exec(heading)![0].length;
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start < 0) throw new Error(`no heading "${heading}"`);
  let inFence = false;
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    const m = /^(#+)\s/.exec(line);
    if (!inFence && m && m[1].length <= level) break;
    body.push(line);
  }
  return body.join('\n');
}

/** Fenced code blocks, with their info string. */
export function fences(text: string): Array<{ lang: string; body: string }> {
  const out: Array<{ lang: string; body: string }> = [];
  const re = /^```(\S*)[^\n]*\n([\s\S]*?)^```\s*$/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) out.push({ lang: m[1], body: m[2] });
  return out;
}

/** A table row's cells, split on pipes that are not escaped and not inside a code span. */
export function cells(row: string): string[] {
  const inner = row.trim().replace(/^\|/, '').replace(/\|$/, '');
  const out: string[] = [];
  let cell = '';
  let code = false;
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i];
    if (c === '\\' && inner[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (c === '`') {
      code = !code;
      cell += c;
    } else if (c === '|' && !code) {
      out.push(cell.trim());
      cell = '';
    } else cell += c;
  }
  out.push(cell.trim());
  return out;
}

/** Every table in the text: its header cells and its body rows' cells (outside fenced code). */
export function tables(text: string): Array<{ header: string[]; rows: string[][]; line: number }> {
  const lines = withoutFences(text).split('\n');
  const out: Array<{ header: string[]; rows: string[][]; line: number }> = [];
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i].trim().startsWith('|') || !/^\s*\|?\s*:?-{3,}/.test(lines[i + 1])) continue;
    const rows: string[][] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j].trim().startsWith('|'); j++) rows.push(cells(lines[j]));
    out.push({ header: cells(lines[i]), rows, line: i + 1 });
    i = j - 1;
  }
  return out;
}

/** The code spans of a text: `a` and `b` in "`a` or `b`"; a span wrapped over lines reads as one line, as rendered. */
export function codeSpans(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1].replace(/\s*\n\s*/g, ' '));
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a document's headings, numbered as GitHub numbers repeats (-1, -2, ...). */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of withoutFences(text).split('\n')) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (m === null) continue;
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Inline links and images outside code: [text](target), the text possibly wrapped over lines, with their line numbers. */
export function links(text: string): Array<{ target: string; line: number }> {
  const prose = withoutFences(text)
    .split('\n')
    .map((line) => line.replace(/`[^`]*`/g, (code) => ' '.repeat(code.length)))
    .join('\n');
  const out: Array<{ target: string; line: number }> = [];
  for (const m of prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    out.push({ target: m[1], line: prose.slice(0, m.index ?? 0).split('\n').length });
  }
  return out;
}
