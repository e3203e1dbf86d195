// What the primary and its workers say to each other over the cluster IPC channel.
//
//   worker ── config? ──────────────> primary     at start (also a respawned worker)
//   worker <───────────── config ──── primary     the answer, and after every reload
//   worker <──────── metrics? {id} ── primary     on a scrape, and every few seconds
//   worker ── metrics {id, json} ───> primary
//   worker ── ready {ready} ────────> primary     at start and whenever it changes

import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Config } from '../config';

/** A registry's metrics as getMetricsAsJSON() gives them (the `aggregator` of each included). */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export type ToPrimary =
  | { replicached: 'config?' }
  | { replicached: 'metrics'; id: number; metrics: MetricsJson }
  | { replicached: 'ready'; ready: boolean };

export type ToWorker = { replicached: 'config'; config: Config } | { replicached: 'metrics?'; id: number };

/** Messages of ours (prom-client and node:cluster send their own on the same channel). */
export function isOurs<T extends { replicached: string }>(message: unknown): message is T {
  return typeof message === 'object' && message !== null && typeof (message as { replicached?: unknown }).replicached === 'string';
}
