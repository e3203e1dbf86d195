import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/registry';

const EXPECTED: [name: string, type: string][] = [
  ['replicached_requests_total', 'counter'],
  ['replicached_request_duration_seconds', 'histogram'],
  ['replicached_requests_in_flight', 'gauge'],
  ['replicached_backend_request_duration_seconds', 'histogram'],
  ['replicached_backend_errors_total', 'counter'],
  ['replicached_backend_timeouts_total', 'counter'],
  ['replicached_backend_up', 'gauge'],
  ['replicached_backend_ejections_total', 'counter'],
  ['replicached_backend_returns_total', 'counter'],
  ['replicached_failovers_total', 'counter'],
  ['replicached_converge_repairs_total', 'counter'],
  ['replicached_replica_disagreements_total', 'counter'],
  ['replicached_reads_total', 'counter'],
  ['replicached_zone_copies_total', 'counter'],
  ['replicached_unspread_writes_total', 'counter'],
  ['replicached_resync_keys_copied_total', 'counter'],
  ['replicached_resync_keys_skipped_total', 'counter'],
  ['replicached_resync_in_progress', 'gauge'],
  ['replicached_client_connections', 'gauge'],
  ['replicached_client_connections_rejected_total', 'counter'],
  ['replicached_client_bytes_received_total', 'counter'],
  ['replicached_client_bytes_sent_total', 'counter'],
  ['replicached_backend_connections', 'gauge'],
  ['replicached_protocol_errors_total', 'counter'],
  ['replicached_resync_runs_total', 'counter'],
  ['replicached_trust_changes_total', 'counter'],
  ['replicached_resync_keys_pending', 'gauge'],
  ['replicached_resync_last_complete_timestamp_seconds', 'gauge'],
  ['replicached_build_info', 'gauge'],
  ['replicached_config_reloads_total', 'counter'],
  ['replicached_session_lock_attempts_total', 'counter'],
  ['replicached_session_lock_grants_total', 'counter'],
  ['replicached_session_lock_wait_seconds', 'histogram'],
  ['replicached_session_lock_hold_seconds', 'histogram'],
  ['replicached_session_lock_takeovers_total', 'counter'],
  ['replicached_session_lock_expired_total', 'counter'],
  ['replicached_session_lock_untracked_total', 'counter'],
  ['replicached_session_lock_holders', 'gauge'],
  ['replicached_discovery_failures_total', 'counter'],
  ['replicached_discovery_changes_total', 'counter'],
  ['replicached_discovery_backends', 'gauge'],
  ['replicached_discovery_last_success_timestamp_seconds', 'gauge'],
  ['replicached_tls_reloads_total', 'counter'],
  ['replicached_config_last_reload_successful', 'gauge'],
  ['replicached_config_last_reload_timestamp_seconds', 'gauge'],
];

describe('metrics registry', () => {
  it('declares every metric with its type, on a private registry', async () => {
    const { registry } = createMetrics();
    const text = await registry.metrics();
    for (const [name, type] of EXPECTED) expect(text).toContain(`# TYPE ${name} ${type}\n`);
    const ours = registry.getMetricsAsArray().filter((m) => m.name.startsWith('replicached_'));
    expect(ours.map((m) => m.name).sort()).toEqual(EXPECTED.map(([n]) => n).sort());
    expect(await globalRegistry.metrics()).not.toContain('replicached_');
  });

  it('two instances do not share values', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.convergeRepairs.inc(5);
    expect((await b.convergeRepairs.get()).values[0]?.value ?? 0).toBe(0);
    expect((await a.convergeRepairs.get()).values[0]?.value).toBe(5);
  });

  it('forgetBackend drops every series of that backend and keeps the others', async () => {
    const m = createMetrics();
    for (const backend of ['127.0.0.1:1', '127.0.0.1:2']) {
      m.addBackend(backend);
      m.backendRecorder(backend);
      m.backendUp.set({ backend }, 1);
      m.backendErrors.inc({ backend, reason: 'timeout' });
      m.backendErrors.inc({ backend, reason: 'refused' });
      m.backendRequestDuration.observe({ backend }, 0.001);
      m.resyncInProgress.set({ backend }, 0);
    }
    await m.forgetBackend('127.0.0.1:1');
    const text = await m.registry.metrics();
    expect(text).not.toContain('backend="127.0.0.1:1"');
    expect(text).toContain('replicached_backend_up{backend="127.0.0.1:2"} 1');
    expect(text).toContain('replicached_backend_errors_total{backend="127.0.0.1:2",reason="refused"} 1');
    expect(text).toContain('replicached_backend_request_duration_seconds_count{backend="127.0.0.1:2"} 1');
  });
});
