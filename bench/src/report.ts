// The bench report: a markdown table (with ratios to the other targets of the same
// workload, the only comparison that means anything on a shared machine) and an SVG
// chart of throughput and p99 latency.

import { spawnSync } from 'node:child_process';
import os from 'node:os';
import type { Report, Row } from './harness';

const MB = 1024 * 1024;

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/**
 * Throughput relative to `target` in the same workload. nutcracker has no binary
 * protocol: a binary row is compared with its text run of the same load, marked *.
 */
function ratio(row: Row, rows: Row[], target: Row['target']): string {
  const same = rows.find((r) => r.workload === row.workload && r.target === target);
  const textTwin = row.workload.replace(/binary$/, 'text');
  const ref = same ?? (target === 'nutcracker' ? rows.find((r) => r.workload === textTwin && r.target === target) : undefined);
  if (!ref || ref.throughput <= 0) return '–';
  return `${(row.throughput / ref.throughput).toFixed(2)}${ref === same ? '' : '*'}`;
}

function version(cmd: string, args: string[], pattern: RegExp): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  return pattern.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? '?';
}

export function environment(): string {
  return [
    `node ${process.version}`,
    `memcached ${version('memcached', ['-V'], /memcached ([\d.]+)/)}`,
    `nutcracker ${version('nutcracker', ['-V'], /nutcracker-([\d.]+)/)}`,
    `${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'})`,
    `load average before the run ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  ].join(', ');
}

export function markdownTable(rows: Row[]): string {
  const head = [
    '| workload | target | req/s | vs memcached | vs nutcracker | p50 µs | p99 µs | p99.9 µs | CPU s/100k req (target) | CPU s/100k (+backends) | peak RSS MB | errors/misses |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const body = rows.map((r) =>
    [
      '',
      r.workload,
      r.target,
      fmtInt(r.throughput),
      ratio(r, rows, 'memcached'),
      ratio(r, rows, 'nutcracker'),
      fmtInt(r.p50),
      fmtInt(r.p99),
      fmtInt(r.p999),
      r.cpuPer100k.toFixed(2),
      r.cpuPer100kWithBackends.toFixed(2),
      (r.peakRssBytes / MB).toFixed(1),
      fmtInt(r.errors),
      '',
    ].join(' | ').trim(),
  );
  return [...head, ...body].join('\n');
}

export function markdownReport(report: Report, env: string): string {
  const o = report.options;
  return [
    `# replicached bench, ${report.startedAt}`,
    '',
    env,
    '',
    `${o.backends} memcached backends; replicached --replicas ${o.replicas}${[...o.replicachedArgs, ...(o.targetArgs ?? [])].map((a) => ' ' + a).join('')}; ` +
      `nutcracker (ketama, 1 copy) over the same backends; memcached alone; node-pipe (Node.js forwarding bytes to one backend, parsing nothing: the runtime's floor). ` +
      `${o.rounds} round(s) x ${o.seconds}s (memaslap) / ${o.sessionSeconds}s (session) per target and workload, alternating targets; warm-up ${o.warmupSeconds}s.`,
    `memaslap: 90% get / 10% set, 1 KiB values, ${o.memaslapConnections} connections (its latency histogram is log2: percentiles are bucket upper bounds). ` +
      `session: add lock / get / set 2-8 KiB / delete lock, ${o.sessionConnections} connections, ${o.sessions} session ids.`,
    'CPU is utime+stime from /proc/<pid>/stat; peak RSS is VmHWM of the target (cumulative over the run). ' +
      'nutcracker speaks no binary protocol: * marks a binary row compared with nutcracker on the text run of the same load.',
    '',
    markdownTable(report.rows),
    '',
  ].join('\n');
}

const COLORS: Record<Row['target'], string> = {
  memcached: '#7f8c8d',
  nutcracker: '#2980b9',
  replicached: '#c0392b',
  'replicached-baseline': '#e67e22',
  'node-pipe': '#27ae60',
};

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Two grouped bar charts side by side: throughput (req/s) and p99 (µs), one group per workload. */
export function svgChart(report: Report): string {
  const workloads = [...new Set(report.rows.map((r) => r.workload))];
  const targets: Row['target'][] = ['memcached', 'nutcracker', 'replicached', 'replicached-baseline', 'node-pipe'];
  const panelW = 460;
  const panelH = 260;
  const top = 50;
  const left = 70;
  const parts: string[] = [];
  const panel = (x0: number, title: string, value: (r: Row) => number, unit: string): void => {
    const max = Math.max(1, ...report.rows.map(value));
    const groupW = (panelW - left - 10) / Math.max(1, workloads.length);
    const barW = (groupW - 12) / targets.length;
    parts.push(`<text x="${x0 + panelW / 2}" y="${top - 20}" text-anchor="middle" font-weight="bold">${escapeXml(title)}</text>`);
    parts.push(`<line x1="${x0 + left}" y1="${top + panelH}" x2="${x0 + panelW - 10}" y2="${top + panelH}" stroke="#333"/>`);
    parts.push(`<line x1="${x0 + left}" y1="${top}" x2="${x0 + left}" y2="${top + panelH}" stroke="#333"/>`);
    for (let t = 0; t <= 4; t++) {
      const v = (max * t) / 4;
      const y = top + panelH - (panelH * t) / 4;
      parts.push(`<text x="${x0 + left - 6}" y="${y + 4}" text-anchor="end" font-size="10">${fmtInt(v)}</text>`);
      if (t > 0) parts.push(`<line x1="${x0 + left}" y1="${y}" x2="${x0 + panelW - 10}" y2="${y}" stroke="#ddd"/>`);
    }
    parts.push(`<text x="${x0 + 14}" y="${top + panelH / 2}" font-size="11" transform="rotate(-90 ${x0 + 14} ${top + panelH / 2})" text-anchor="middle">${unit}</text>`);
    workloads.forEach((w, gi) => {
      const gx = x0 + left + 6 + gi * groupW;
      targets.forEach((t, ti) => {
        const row = report.rows.find((r) => r.workload === w && r.target === t);
        if (!row) return;
        const h = (panelH * value(row)) / max;
        const x = gx + ti * barW;
        parts.push(`<rect x="${x.toFixed(1)}" y="${(top + panelH - h).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[t]}"><title>${t} ${w}: ${fmtInt(value(row))} ${unit}</title></rect>`);
      });
      parts.push(`<text x="${gx + (groupW - 12) / 2}" y="${top + panelH + 16}" text-anchor="middle" font-size="11">${w}</text>`);
    });
  };
  panel(0, 'Throughput (higher is better)', (r) => r.throughput, 'req/s');
  panel(panelW + 20, 'p99 latency (lower is better)', (r) => r.p99, 'µs');
  const legendY = top + panelH + 40;
  targets.forEach((t, i) => {
    parts.push(`<rect x="${left + i * 140}" y="${legendY - 10}" width="12" height="12" fill="${COLORS[t]}"/>`);
    parts.push(`<text x="${left + i * 140 + 18}" y="${legendY}" font-size="12">${t}</text>`);
  });
  const width = panelW * 2 + 20;
  const height = legendY + 20;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...parts,
    `<text x="${width - 6}" y="${height - 6}" text-anchor="end" font-size="10" fill="#666">${escapeXml(report.startedAt)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}
