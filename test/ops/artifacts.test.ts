// The operations artifacts stay true to the code: every metric the Grafana
// dashboard queries is one replicached exports, and every example config loads.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { parseDocument, parseAllDocuments } from 'yaml';
import { loadConfig, parseArgs, type RunArgs } from '../../src/config';
import { createMetrics } from '../../src/metrics/registry';

const ROOT = path.join(__dirname, '..', '..');
const read = (p: string) => readFileSync(path.join(ROOT, p), 'utf8');

async function exportedSeriesNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const m of await createMetrics().registry.getMetricsAsJSON()) {
    names.add(m.name);
    // prom-client's typings declare `type` a numeric enum; at run time it is the string.
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
  }
  return names;
}

test('every metric in dashboards/grafana.json is exported', async () => {
  const dashboard = JSON.parse(read('dashboards/grafana.json')) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  expect(exprs.length).toBeGreaterThan(20);
  const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\b((?:replicached|process|nodejs)_[a-z0-9_]+)\{/g)].map((m) => m[1])));
  const exported = await exportedSeriesNames();
  expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  // The list: requests, latency quantiles, backend up, failovers, repairs (read repair is gone: a
  // trusted member's miss is final; members are repaired by the convergence check), disagreements, resync,
  // connections, bytes.
  for (const name of [
    'replicached_requests_total',
    'replicached_request_duration_seconds_bucket',
    'replicached_backend_up',
    'replicached_failovers_total',
    'replicached_converge_repairs_total',
    'replicached_replica_disagreements_total',
    'replicached_resync_in_progress',
    'replicached_client_connections',
    'replicached_client_bytes_sent_total',
  ]) {
    expect(used).toContain(name);
  }
  expect(exprs.some((e) => e.startsWith('histogram_quantile(0.99'))).toBe(true);
  // And the other way round: every metric of replicached's own has a panel (a histogram by its buckets).
  const own = [...exported].filter((name) => name.startsWith('replicached_') && !/_(sum|count)$/.test(name));
  const histograms = new Set(own.filter((n) => n.endsWith('_bucket')).map((n) => n.slice(0, -'_bucket'.length)));
  expect(own.filter((name) => !histograms.has(name) && !used.has(name))).toEqual([]);
  // The resync gauges an operator watches during an incident (issue 20).
  expect(used).toContain('replicached_resync_keys_pending');
  expect(used).toContain('replicached_resync_last_complete_timestamp_seconds');
});

function loadText(text: string, name: string) {
  const args = parseArgs(['--config', name]) as RunArgs;
  return loadConfig(args, () => text);
}

test('the example configs load', () => {
  const example = loadText(read('examples/replicached.yaml'), 'replicached.yaml');
  expect(example.backends.map((b) => b.address)).toEqual(['memcached-0:11211', 'memcached-1:11211', 'memcached-2:11211']);
  // The image's config: reachable through `docker run -p` (scripts/check-dockerfile.sh runs that line).
  expect(example.listen).toEqual({ host: '0.0.0.0', port: 11211 });
  expect(example.metricsListen).toEqual({ host: '0.0.0.0', port: 9150 });

  const compose = loadText(read('examples/compose/replicached/replicached.yaml'), 'replicached.yaml');
  expect(compose.replicas).toBe(2);

  const docs = parseAllDocuments(read('examples/kubernetes/web-with-replicached.yaml')).map((d) => d.toJS() as Record<string, unknown>);
  const configMap = docs.find((d) => d.kind === 'ConfigMap') as { data: Record<string, string> };
  const k8s = loadText(configMap.data['replicached.yaml'], 'configmap');
  expect(k8s.metricsListen?.port).toBe(9150);
  // The memcached are found through the SRV records of the StatefulSet's headless Service: the
  // name asked is the one Kubernetes' DNS gives the Service's port (_<port name>._<protocol>.<service>...).
  type Service = { metadata: { name: string }; spec: { clusterIP?: string; publishNotReadyAddresses?: boolean; ports: Array<{ name: string; protocol: string }> } };
  const service = docs.find((d) => d.kind === 'Service') as Service;
  const statefulSet = docs.find((d) => d.kind === 'StatefulSet') as { spec: { serviceName: string } };
  expect(service.spec.clusterIP).toBe('None');
  expect(service.spec.publishNotReadyAddresses).toBe(true);
  expect(statefulSet.spec.serviceName).toBe(service.metadata.name);
  const [port] = service.spec.ports;
  expect(k8s.backendsFrom?.url).toBe(`dnssrv://_${port.name}._${port.protocol.toLowerCase()}.${service.metadata.name}.default.svc.cluster.local`);
  expect(k8s.backends).toEqual([]);

  expect(parseDocument(read('examples/compose/docker-compose.yml')).errors).toEqual([]);
});

test('the examples stop php-fpm before replicached, and the compose sidecars see config edits', () => {
  type Container = { name: string; restartPolicy?: string; readinessProbe?: { httpGet: { path: string } } };
  type PodSpec = { terminationGracePeriodSeconds?: number; initContainers?: Container[]; containers: Container[] };
  const docs = parseAllDocuments(read('examples/kubernetes/web-with-replicached.yaml')).map((d) => d.toJS() as Record<string, unknown>);
  const deployment = docs.find((d) => d.kind === 'Deployment') as { spec: { template: { spec: PodSpec } } };
  const pod = deployment.spec.template.spec;
  // A native sidecar: the kubelet stops the containers first and init containers with restartPolicy Always after them.
  const sidecar = pod.initContainers?.find((c) => c.name === 'replicached');
  expect(sidecar?.restartPolicy).toBe('Always');
  expect(sidecar?.readinessProbe?.httpGet.path).toBe('/readyz');
  expect(pod.containers.map((c) => c.name)).toEqual(['php-fpm']);
  const configMap = docs.find((d) => d.kind === 'ConfigMap') as { data: Record<string, string> };
  const k8s = loadText(configMap.data['replicached.yaml'], 'configmap');
  expect(pod.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(k8s.drainTimeoutMs + 30_000); // + php-fpm's 30 s

  type Service = { network_mode?: string; depends_on?: string[]; volumes?: string[] };
  const compose = parseDocument(read('examples/compose/docker-compose.yml'), { merge: true }).toJS() as { services: Record<string, Service> };
  for (const web of ['web1', 'web2']) {
    // php-fpm depends on its sidecar, so compose stops php-fpm first.
    expect(compose.services[web].network_mode).toBe(`service:${web}-replicached`);
    expect(compose.services[web].depends_on).toContain(`${web}-replicached`);
    // A directory mount: an edit that replaces the file is seen in the container.
    expect(compose.services[`${web}-replicached`].volumes).toContain('./replicached:/etc/replicached:ro');
  }
  expect(read('examples/compose/php/shutdown.conf')).toMatch(/^process_control_timeout = \d+s$/m);
});

test('the examples agree with each other: memcached with -I 2m, metrics published on loopback only, one image name', () => {
  const version = (JSON.parse(read('package.json')) as { version: string }).version;
  const image = `replicached:${version}`;
  type Service = { image?: string; command?: string[]; ports?: string[]; build?: unknown };
  const compose = parseDocument(read('examples/compose/docker-compose.yml'), { merge: true }).toJS() as { services: Record<string, Service> };
  const services = Object.entries(compose.services);
  const docs = parseAllDocuments(read('examples/kubernetes/web-with-replicached.yaml')).map((d) => d.toJS() as Record<string, unknown>);
  type Container = { name: string; image: string; args?: string[] };
  type Workload = { kind: string; spec: { template: { spec: { initContainers?: Container[]; containers: Container[] } } } };
  const containers = docs
    .filter((d): d is Workload => d.kind === 'StatefulSet' || d.kind === 'Deployment')
    .flatMap((d) => [...(d.spec.template.spec.initContainers ?? []), ...d.spec.template.spec.containers]);

  // memcached -I: a little above replicached's maxItemSize, so every value the proxy accepts is stored.
  const itemSize = (args: string[] = []): string | undefined => (args.includes('-I') ? args[args.indexOf('-I') + 1] : undefined);
  const memcachedServices = services.filter(([, s]) => s.image?.startsWith('memcached:'));
  expect(memcachedServices.map(([name]) => name)).toEqual(['memcached-0', 'memcached-1', 'memcached-2']);
  for (const [name, s] of memcachedServices) expect(itemSize(s.command), name).toBe('2m');
  const memcachedPods = containers.filter((c) => c.image.startsWith('memcached:'));
  expect(memcachedPods).toHaveLength(1);
  for (const c of memcachedPods) expect(itemSize(c.args), c.name).toBe('2m');

  // compose: whatever is published goes to the host's loopback, never to every interface.
  const published = services.flatMap(([, s]) => s.ports ?? []);
  expect(published.length).toBeGreaterThan(0);
  for (const p of published) expect(p).toMatch(/^127\.0\.0\.1:\d+:\d+$/);

  // One image name: the Dockerfile's build and run lines, compose, Kubernetes.
  const dockerfile = read('Dockerfile');
  expect(/^#\s+build:\s+docker build -t (\S+) \.$/m.exec(dockerfile)?.[1]).toBe(image);
  expect(/^#\s+run:\s+docker run .* (\S+)$/m.exec(dockerfile)?.[1]).toBe(image);
  const replicachedServices = services.filter(([, s]) => s.build !== undefined && s.image?.startsWith('replicached'));
  expect(replicachedServices.map(([name]) => name)).toEqual(['web1-replicached', 'web2-replicached']);
  for (const [name, s] of replicachedServices) expect(s.image, name).toBe(image);
  expect(containers.filter((c) => c.name === 'replicached').map((c) => c.image)).toEqual([image]);
});
