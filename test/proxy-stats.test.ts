import { expect, test } from 'vitest';
import { createMetrics } from '../src/metrics/registry';
import { ProxyStats } from '../src/proxy-stats';

test('stats figures are the request counts the metrics keep', () => {
  const metrics = createMetrics();
  const stats = new ProxyStats('1.6.0', () => [], () => 2, metrics.requestCount);
  for (const [command, result] of [
    ['get', 'hit'],
    ['gets', 'miss'],
    ['gat', 'hit'],
    ['set', 'stored'],
    ['add', 'not_stored'],
    ['touch', 'touched'],
    ['cas', 'exists'],
  ]) {
    metrics.countRequest(command, result, 0.001);
  }
  const figures = new Map(stats.snapshot());
  expect(figures.get('cmd_get')).toBe(3);
  expect(figures.get('get_hits')).toBe(1);
  expect(figures.get('get_misses')).toBe(1);
  expect(figures.get('cmd_set')).toBe(3);
  expect(figures.get('cmd_touch')).toBe(2);
  expect(figures.get('touch_hits')).toBe(1);
  expect(figures.get('cas_badval')).toBe(1);
  expect(figures.get('replicached_replicas')).toBe(2);
});

test('stats reset zeroes the counts, not the gauges, and leaves the metrics alone', () => {
  const metrics = createMetrics();
  const stats = new ProxyStats('1.6.0', () => [], () => 2, metrics.requestCount);
  metrics.countRequest('get', 'hit', 0.001);
  stats.currConnections = 3;
  stats.totalConnections = 5;
  stats.bytesRead = 100;
  stats.reset();
  metrics.countRequest('get', 'miss', 0.001);
  stats.bytesRead += 7;
  const figures = new Map(stats.snapshot());
  expect(figures.get('cmd_get')).toBe(1);
  expect(figures.get('get_hits')).toBe(0);
  expect(figures.get('get_misses')).toBe(1);
  expect(figures.get('total_connections')).toBe(0);
  expect(figures.get('bytes_read')).toBe(7);
  expect(figures.get('curr_connections')).toBe(3);
  expect(metrics.requestCount('get')).toBe(2);
});
