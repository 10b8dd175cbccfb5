/**
 * Static checks of the deployment files: docker-compose.yml, infra/k8s/*.yaml, infra/systemd/*,
 * infra/redis.conf, infra/nginx.conf, infra/Caddyfile and the walkthrough in docs/OPERATIONS.md.
 * Parses them (no docker daemon or cluster needed), checks their structure against the relay's real
 * options, and runs the tools that are installed: `nginx -t`, `caddy validate`, `kubectl kustomize`,
 * `systemd-analyze verify`, redis-server. A missing tool skips only its own case, named as skipped.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_STREAM_WINDOW_BYTES } from '@burrow/protocol';
import { parse, parseAllDocuments } from 'yaml';
import { parseRelayConfig, RELAY_OPTIONS, type RelayConfig } from '../apps/relay/src/config';
import { selfSignedCert } from './certs';

type Obj = Record<string, unknown>;

const root = join(__dirname, '..');
const read = (path: string): string => readFileSync(join(root, path), 'utf8');
const obj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Absolute path of a command on PATH, or undefined. */
function which(command: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  return r.status === 0 && path !== '' ? path : undefined;
}

const RELAY_ENVS = new Set(RELAY_OPTIONS.map((o) => o.env));
const RELAY_FLAGS = new Set(RELAY_OPTIONS.map((o) => o.flag));
/** BURROW_* variables the agent reads: every name in apps/agent/src that is not an error code. */
const AGENT_ENVS = new Set(
  readdirSync(join(root, 'apps/agent/src'))
    .filter((f) => f.endsWith('.ts'))
    .flatMap((f) => read(`apps/agent/src/${f}`).match(/\bBURROW_[A-Z0-9_]+\b/g) ?? [])
    .filter((name) => !name.startsWith('BURROW_ERR_')),
);
/** Every BURROW_* name in a text, error codes aside. */
const burrowVars = (text: string): string[] => [...new Set(text.match(/\bBURROW_[A-Z0-9_]+\b/g) ?? [])].filter((v) => !v.startsWith('BURROW_ERR_'));
const DEFAULT_DRAIN_MS = Number(RELAY_OPTIONS.find((o) => o.env === 'BURROW_DRAIN_TIMEOUT_MS')?.defaultText);

/** Compose-style interpolation: ${VAR:-default} and ${VAR-default} take the default, ${VAR} is empty, $$ is $. */
const interpolate = (s: string): string =>
  s
    .replace(/\$\$/g, '\0')
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}/g, (_m, _name, def: string | undefined) => def ?? '')
    .replace(/\0/g, '$');

/** Parses relay settings given as environment variables, as the relay would at start. */
function relayConfigFrom(env: Record<string, string>): RelayConfig {
  const parsed = parseRelayConfig([], env);
  if (parsed.kind !== 'config') throw new Error('expected a configuration');
  return parsed.config;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };
/** "30s", "1m30s", "500ms", "2m" (compose and systemd durations) in milliseconds. */
function durationMs(text: string): number {
  let total = 0;
  const re = /(\d+(?:\.\d+)?)\s*(ms|min|s|m|h)?/g;
  for (const m of text.matchAll(re)) {
    const n = Number(m[1]);
    const unit = m[2] ?? 's';
    total += n * (UNIT_MS[unit] ?? Number.NaN);
  }
  return total;
}

/** host:port of --admin-listen → port. */
const adminPort = (listen: string): number => Number(listen.slice(listen.lastIndexOf(':') + 1));

// ------------------------------------------------------------------------------------------------

describe('docker-compose.yml', () => {
  const text = read('docker-compose.yml');
  const compose = obj(parse(text, { merge: true }));
  const services = obj(compose.services);
  const svc = (name: string): Obj => obj(services[name]);
  const env = (name: string): Record<string, string> => {
    const e = svc(name).environment;
    const out: Record<string, string> = {};
    if (Array.isArray(e)) {
      for (const item of e) {
        const s = String(item);
        const eq = s.indexOf('=');
        out[eq < 0 ? s : s.slice(0, eq)] = eq < 0 ? '' : s.slice(eq + 1);
      }
    } else for (const [k, v] of Object.entries(obj(e))) out[k] = String(v);
    return out;
  };
  const relays = ['relay-a', 'relay-b'];

  test('has Redis, two relays, Caddy, the example app, an agent, and Prometheus and Grafana', () => {
    expect(Object.keys(services).sort()).toEqual(['agent', 'caddy', 'grafana', 'hello-app', 'prometheus', 'redis', 'relay-a', 'relay-b']);
  });

  test('every BURROW_* variable in it is a relay or agent option', () => {
    expect(burrowVars(text).filter((v) => !RELAY_ENVS.has(v) && !AGENT_ENVS.has(v))).toEqual([]);
  });

  test('Redis runs with infra/redis.conf, unpublished', () => {
    const redis = svc('redis');
    expect(arr(redis.volumes)).toContainEqual(expect.stringMatching(/^\.\/infra\/redis\.conf:(\/[^:]+):ro$/));
    const mounted = String(arr(redis.volumes).find((v) => String(v).startsWith('./infra/redis.conf'))).split(':')[1];
    expect(arr(redis.command)).toContain(mounted);
    expect(redis.ports).toBeUndefined();
  });

  test.each(relays)('%s: same image, Redis URL, its own node id, admin listener inside the network only', (name) => {
    const s = svc(name);
    expect(s.image).toBe('burrow-relay');
    expect(s.build).toBe('.');
    expect(s.ports).toBeUndefined();
    const e = env(name);
    expect(e.BURROW_REDIS_URL).toMatch(/^redis:\/\/redis:6379/);
    expect(e.BURROW_NODE_ID).toBe(name);
    expect(e.BURROW_ADMIN_LISTEN).toBe('0.0.0.0:9091');
    expect(arr(s.expose).map(String)).toEqual(expect.arrayContaining(['8080', '9091']));
    expect(obj(obj(s.depends_on).redis).condition).toBe('service_healthy');
  });

  test.each(relays)('%s: its environment is a valid relay configuration', (name) => {
    const resolved = Object.fromEntries(Object.entries(env(name)).map(([k, v]) => [k, interpolate(v)]));
    const config = relayConfigFrom(resolved);
    expect(config.nodeId).toBe(name);
    expect(config.publicUrl).toMatch(/^https:\/\//);
  });

  test.each(relays)('%s: healthy means /readyz on the admin port; Docker waits longer than the drain', (name) => {
    const s = svc(name);
    expect(arr(obj(s.healthcheck).test).join(' ')).toContain(`:${adminPort(env(name).BURROW_ADMIN_LISTEN ?? '')}/readyz`);
    const drainMs = Number(env(name).BURROW_DRAIN_TIMEOUT_MS ?? DEFAULT_DRAIN_MS);
    expect(durationMs(String(s.stop_grace_period))).toBeGreaterThan(drainMs);
  });

  test('the relays have distinct node ids', () => {
    expect(new Set(relays.map((r) => env(r).BURROW_NODE_ID)).size).toBe(relays.length);
  });

  test('Caddy uses infra/Caddyfile, balances over both relays and health-checks their admin port', () => {
    const caddy = svc('caddy');
    expect(arr(caddy.volumes)).toContainEqual(expect.stringMatching(/^\.\/infra\/Caddyfile:\/etc\/caddy\/Caddyfile/));
    const e = env('caddy');
    expect(e.RELAY_UPSTREAMS?.split(/\s+/).sort()).toEqual(relays.map((r) => `${r}:8080`));
    expect(Number(e.RELAY_ADMIN_PORT)).toBe(adminPort(env('relay-a').BURROW_ADMIN_LISTEN ?? ''));
    expect(interpolate(e.CADDY_TLS ?? '')).toBe('internal');
    expect(interpolate(e.BURROW_DOMAIN ?? '')).toMatch(/\.localhost$/);
    expect(arr(caddy.ports).map((p) => interpolate(String(p)))).toEqual(expect.arrayContaining(['80:80', '443:443']));
  });

  test('the agent exposes the example app through the proxy and trusts Caddy’s local CA', () => {
    const agent = svc('agent');
    expect(agent.network_mode).toBe('service:hello-app');
    const relay = new URL(interpolate(env('agent').BURROW_RELAY ?? ''));
    expect(relay.protocol).toBe('https:');
    // The apex name resolves to Caddy inside the network.
    const aliases = arr(obj(obj(svc('caddy').networks).default).aliases).map((a) => interpolate(String(a)));
    expect(aliases).toContain(relay.hostname);
    expect(env('agent').NODE_EXTRA_CA_CERTS).toMatch(/root\.crt$/);
    expect(arr(svc('hello-app').volumes)).toContainEqual(expect.stringMatching(/^\.\/examples\/hello-app\.js:/));
  });

  test('Prometheus and Grafana only under the observability profile; Prometheus scrapes both relays', () => {
    for (const [name, s] of Object.entries(services)) {
      expect([name, obj(s).profiles]).toEqual([name, ['prometheus', 'grafana'].includes(name) ? ['observability'] : undefined]);
    }
    const configs = obj(compose.configs);
    expect(arr(svc('prometheus').volumes)).toContainEqual(expect.stringMatching(/^\.\/infra\/prometheus\.yml:\/etc\/prometheus\/prometheus\.yml/));
    const prom = obj(parse(read('infra/prometheus.yml')));
    const targets = arr(prom.scrape_configs).flatMap((j) => arr(obj(j).static_configs).flatMap((c) => arr(obj(c).targets)));
    expect(targets.sort()).toEqual(relays.map((r) => `${r}:9091`));
    expect(arr(svc('grafana').volumes)).toContainEqual(expect.stringMatching(/^\.\/infra\/grafana\/burrow-relay\.json:/));
    for (const ref of [...arr(svc('prometheus').configs), ...arr(svc('grafana').configs)]) {
      expect(Object.keys(configs)).toContain(obj(ref).source);
    }
  });

  test('every file it mounts from the repository exists', () => {
    const sources = Object.values(services)
      .flatMap((s) => arr(obj(s).volumes))
      .map((v) => String(v).split(':')[0] ?? '')
      .filter((p) => p.startsWith('./'));
    expect(sources.length).toBeGreaterThan(2);
    for (const p of sources) expect(() => readFileSync(join(root, p))).not.toThrow();
  });
});

// ------------------------------------------------------------------------------------------------

describe('infra/k8s', () => {
  const dir = join(root, 'infra/k8s');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  const docs: { file: string; doc: Obj }[] = files.flatMap((file) =>
    parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]?.message}`);
      return { file, doc: obj(d.toJS()) };
    }),
  );
  const find = (kind: string, name?: string): Obj => {
    const found = docs.filter(({ doc }) => doc.kind === kind && (name === undefined || obj(doc.metadata).name === name));
    if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''}, found ${found.length}`);
    return (found[0] as { doc: Obj }).doc;
  };
  const deployment = find('Deployment', 'burrow-relay');
  const podSpec = obj(obj(obj(deployment.spec).template).spec);
  const podLabels = obj(obj(obj(obj(deployment.spec).template).metadata).labels);
  const container = obj(arr(podSpec.containers)[0]);
  const configMap = obj(find('ConfigMap', 'burrow-relay').data) as Record<string, string>;
  const secret = obj(find('Secret', 'burrow-relay').stringData) as Record<string, string>;
  const containerPort = (name: string): number => Number(obj(arr(container.ports).find((p) => obj(p).name === name)).containerPort);
  const matches = (selector: Obj): boolean => Object.entries(selector).every(([k, v]) => podLabels[k] === v);

  test('every file parses, and every document has apiVersion, kind and a name', () => {
    expect(files).toEqual(expect.arrayContaining(['kustomization.yaml', 'deployment.yaml', 'service.yaml', 'pdb.yaml', 'redis.yaml']));
    for (const { file, doc } of docs) {
      expect([file, typeof doc.apiVersion, typeof doc.kind]).toEqual([file, 'string', 'string']);
      if (doc.kind !== 'Kustomization') expect([file, typeof obj(doc.metadata).name]).toEqual([file, 'string']);
    }
  });

  test('kustomization.yaml lists every other file', () => {
    const kustomization = find('Kustomization');
    expect(arr(kustomization.resources).map(String).sort()).toEqual(files.filter((f) => f !== 'kustomization.yaml').sort());
  });

  test('every BURROW_* variable in it is a relay or agent option', () => {
    const text = files.map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
    expect(burrowVars(text).filter((v) => !RELAY_ENVS.has(v) && !AGENT_ENVS.has(v))).toEqual([]);
  });

  test('Deployment: 3 replicas, settings from the ConfigMap and Secret, node id from the pod name', () => {
    expect(obj(deployment.spec).replicas).toBe(3);
    const from = arr(container.envFrom).map((e) => obj(e));
    expect(from.map((e) => obj(e.configMapRef).name ?? obj(e.secretRef).name).sort()).toEqual(['burrow-relay', 'burrow-relay']);
    const nodeId = obj(arr(container.env).find((e) => obj(e).name === 'BURROW_NODE_ID'));
    expect(obj(obj(nodeId.valueFrom).fieldRef).fieldPath).toBe('metadata.name');
    expect(podSpec.enableServiceLinks).toBe(false);
  });

  test('ConfigMap + Secret + node id make a valid relay configuration', () => {
    const config = relayConfigFrom({ ...configMap, ...secret, BURROW_NODE_ID: 'burrow-relay-7d9f-abcde' });
    expect(config.redisUrl ?? config.redisCluster.join(',')).not.toBe('');
    expect(config.adminListen).not.toBe('off');
  });

  test('readiness probe: /readyz on the admin port; liveness: /healthz there', () => {
    const readiness = obj(obj(container.readinessProbe).httpGet);
    const liveness = obj(obj(container.livenessProbe).httpGet);
    expect(readiness.path).toBe('/readyz');
    expect(liveness.path).toBe('/healthz');
    const admin = adminPort(configMap.BURROW_ADMIN_LISTEN ?? '');
    for (const probe of [readiness, liveness]) {
      expect(typeof probe.port === 'number' ? probe.port : containerPort(String(probe.port))).toBe(admin);
    }
    expect(containerPort('http')).toBe(Number(configMap.BURROW_PORT ?? 8080));
  });

  test('terminationGracePeriodSeconds x 1000 exceeds the drain timeout', () => {
    const drainMs = Number(configMap.BURROW_DRAIN_TIMEOUT_MS ?? DEFAULT_DRAIN_MS);
    expect(Number(podSpec.terminationGracePeriodSeconds) * 1000).toBeGreaterThan(drainMs);
  });

  test('non-root, read-only root filesystem, no privilege escalation, resources set', () => {
    const pod = obj(podSpec.securityContext);
    const c = obj(container.securityContext);
    expect(pod.runAsNonRoot).toBe(true);
    expect(c.readOnlyRootFilesystem).toBe(true);
    expect(c.allowPrivilegeEscalation).toBe(false);
    expect(arr(obj(c.capabilities).drop)).toContain('ALL');
    expect(obj(obj(container.resources).requests).memory).toBeDefined();
    expect(obj(obj(container.resources).limits).memory).toBeDefined();
  });

  test('PodDisruptionBudget: maxUnavailable 1, selector matching the Deployment', () => {
    const pdb = obj(find('PodDisruptionBudget').spec);
    expect(pdb.maxUnavailable).toBe(1);
    const selector = obj(obj(pdb.selector).matchLabels);
    expect(selector).toEqual(obj(obj(obj(deployment.spec).selector).matchLabels));
    expect(matches(selector)).toBe(true);
  });

  test('public Service on the http port, headless admin Service on the admin port, both selecting the pods', () => {
    const pub = obj(find('Service', 'burrow-relay').spec);
    const admin = obj(find('Service', 'burrow-relay-admin').spec);
    expect(matches(obj(pub.selector))).toBe(true);
    expect(matches(obj(admin.selector))).toBe(true);
    expect(obj(arr(pub.ports)[0]).targetPort).toBe('http');
    expect(admin.clusterIP).toBe('None');
    expect(containerPort(String(obj(arr(admin.ports)[0]).targetPort))).toBe(adminPort(configMap.BURROW_ADMIN_LISTEN ?? ''));
    expect(pub.sessionAffinity ?? 'None').toBe('None');
  });

  test('in-cluster Redis: a one-node StatefulSet behind the Service the Secret points at', () => {
    const sts = find('StatefulSet', 'burrow-redis');
    expect(obj(sts.spec).replicas).toBe(1);
    expect(arr(obj(sts.spec).volumeClaimTemplates).length).toBe(1);
    find('Service', 'burrow-redis');
    expect(new URL(secret.BURROW_REDIS_URL ?? '').hostname).toBe('burrow-redis');
  });

  test('Ingress: wildcard and apex hosts with TLS, to the public Service', () => {
    const spec = obj(find('Ingress').spec);
    const domain = configMap.BURROW_DOMAIN ?? '';
    const hosts = arr(spec.rules).map((r) => obj(r).host);
    expect(hosts.sort()).toEqual([`*.${domain}`, domain].sort());
    expect(arr(obj(arr(spec.tls)[0]).hosts).sort()).toEqual([`*.${domain}`, domain].sort());
    expect(new URL(configMap.BURROW_PUBLIC_URL ?? '').hostname).toBe(domain);
  });

  const kubectl = which('kubectl');
  (kubectl ? test : test.skip)(`kubectl kustomize renders it${kubectl ? '' : ' (SKIPPED: kubectl is not installed)'}`, () => {
    const r = spawnSync(kubectl as string, ['kustomize', dir], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const kinds = parseAllDocuments(r.stdout).map((d) => obj(d.toJS()).kind);
    expect(kinds).toEqual(expect.arrayContaining(['Namespace', 'ConfigMap', 'Secret', 'Deployment', 'Service', 'PodDisruptionBudget', 'StatefulSet']));
  });
});

// ------------------------------------------------------------------------------------------------

describe('infra/systemd', () => {
  const unitText = read('infra/systemd/burrow-relay.service');
  const envText = read('infra/systemd/relay.env.example');
  /** section → key → values (a key may repeat). Comments and blank lines dropped. */
  const unit = new Map<string, Map<string, string[]>>();
  let section = '';
  for (const raw of unitText.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1] as string;
      unit.set(section, unit.get(section) ?? new Map());
      continue;
    }
    const eq = line.indexOf('=');
    const keys = unit.get(section) as Map<string, string[]>;
    const key = line.slice(0, eq);
    keys.set(key, [...(keys.get(key) ?? []), line.slice(eq + 1)]);
  }
  const service = unit.get('Service') ?? new Map<string, string[]>();
  const value = (key: string): string | undefined => service.get(key)?.at(-1);
  const envFile: Record<string, string> = {};
  for (const line of envText.split('\n')) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) envFile[m[1] as string] = m[2] as string;
  }

  test('the unit has the sections and hardening it needs', () => {
    expect([...unit.keys()]).toEqual(['Unit', 'Service', 'Install']);
    expect(value('DynamicUser') === 'yes' || value('User') !== undefined).toBe(true);
    expect(value('NoNewPrivileges')).toBe('yes');
    expect(value('ProtectSystem')).toBe('strict');
    expect(value('StateDirectory')).toBe('burrow-relay');
    expect(value('EnvironmentFile')).toBe('/etc/burrow/relay.env');
    expect(value('KillSignal')).toBe('SIGTERM');
    expect(value('Restart')).toBe('on-failure');
    expect(value('ExecStart')).toMatch(/apps\/relay\/dist\/main\.js|burrow-relay/);
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  test('--data-dir is the StateDirectory', () => {
    const dataDir = service.get('Environment')?.find((e) => e.startsWith('BURROW_DATA_DIR='));
    expect(dataDir).toBe(`BURROW_DATA_DIR=/var/lib/${value('StateDirectory')}`);
  });

  test('TimeoutStopSec exceeds the drain timeout of the example environment', () => {
    const drainMs = Number(envFile.BURROW_DRAIN_TIMEOUT_MS ?? DEFAULT_DRAIN_MS);
    expect(durationMs(value('TimeoutStopSec') ?? '0')).toBeGreaterThan(drainMs);
  });

  test('every BURROW_* variable in the unit and the example is a relay option, and the example is a valid configuration', () => {
    expect(burrowVars(unitText + envText).filter((v) => !RELAY_ENVS.has(v))).toEqual([]);
    const config = relayConfigFrom(envFile);
    expect(config.publicUrl).toMatch(/^https:\/\//);
  });

  const analyze = which('systemd-analyze');
  (analyze ? test : test.skip)(`systemd-analyze verify finds nothing unknown${analyze ? '' : ' (SKIPPED: systemd-analyze is not installed)'}`, () => {
    const r = spawnSync(analyze as string, ['verify', join(root, 'infra/systemd/burrow-relay.service')], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/Unknown (key|section)|Invalid|Failed to parse|bad-setting/i);
  });
});

// ------------------------------------------------------------------------------------------------

describe("the relay's Node flags", () => {
  const { shebangNodeFlags } = require('../bench/lib/node-flags') as { shebangNodeFlags: (script: string) => string[] };
  const flags = shebangNodeFlags(join(root, 'apps/relay/src/main.ts'));

  test('the shebang runs node with a 16 MiB young generation (burrow-relay, the Docker image, compose, Kubernetes)', () => {
    expect(read('apps/relay/src/main.ts').split('\n')[0]).toBe('#!/usr/bin/env -S node --min-semi-space-size=16');
    expect(flags).toEqual(['--min-semi-space-size=16']);
    // The image runs burrow-relay, a link to main.js: the shebang applies.
    expect(read('Dockerfile')).toMatch(/ln -s \/app\/apps\/relay\/dist\/main\.js \/usr\/local\/bin\/burrow-relay/);
    expect(read('Dockerfile')).toMatch(/ENTRYPOINT \["burrow-relay"\]/);
  });

  test('the systemd unit and `npm run relay` pass the same flags to node', () => {
    expect(read('infra/systemd/burrow-relay.service')).toMatch(
      new RegExp(`^ExecStart=/usr/bin/node ${flags.join(' ')} /opt/burrow/apps/relay/dist/main\\.js$`, 'm'),
    );
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.relay).toBe(`node ${flags.join(' ')} apps/relay/dist/main.js`);
  });

  test('this Node accepts them', () => {
    const r = spawnSync(
      process.execPath,
      [...flags, '-e', 'process.stdout.write(String(require("v8").getHeapSpaceStatistics().find((s) => s.space_name === "new_space").space_size))'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status).toBe(0);
    // The young generation starts at least 16 MiB large (one semi-space of it counted here).
    expect(Number(r.stdout)).toBeGreaterThanOrEqual(16 * 1024 * 1024);
  });

  test('a shebang without flags, or not node, yields none', () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-shebang-'));
    try {
      const plain = join(dir, 'a.js');
      writeFileSync(plain, '#!/usr/bin/env node\n');
      expect(shebangNodeFlags(plain)).toEqual([]);
      writeFileSync(plain, '#!/bin/sh\necho\n');
      expect(shebangNodeFlags(plain)).toEqual([]);
      writeFileSync(plain, '#!/usr/bin/env -S node --a=1 --b\n');
      expect(shebangNodeFlags(plain)).toEqual(['--a=1', '--b']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('infra/redis.conf', () => {
  /** directive → arguments; repeated directives (save, client-output-buffer-limit) keep every line. */
  const directives = (text: string): Map<string, string[][]> => {
    const out = new Map<string, string[][]>();
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const [name, ...args] = line.split(/\s+/);
      out.set(name as string, [...(out.get(name as string) ?? []), args]);
    }
    return out;
  };
  const bytes = (s: string): number => {
    const m = /^(\d+)(kb|mb|gb|k|m|g)?$/i.exec(s);
    if (!m) throw new Error(`not a size: ${s}`);
    const mult: Record<string, number> = { k: 1000, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 };
    return Number(m[1]) * (m[2] ? (mult[m[2].toLowerCase()] as number) : 1);
  };
  const conf = directives(read('infra/redis.conf'));
  const one = (name: string): string => (conf.get(name)?.at(-1) ?? []).join(' ');
  const pubsub = (conf.get('client-output-buffer-limit') ?? []).find((a) => a[0] === 'pubsub') ?? [];

  test('no eviction, idle clients kept, keepalive on, append-only file fsynced every second', () => {
    expect(one('maxmemory-policy')).toBe('noeviction');
    expect(one('timeout')).toBe('0');
    expect(Number(one('tcp-keepalive'))).toBeGreaterThan(0);
    expect(one('appendonly')).toBe('yes');
    expect(one('appendfsync')).toBe('everysec');
  });

  test('the pub/sub hard limit holds a full window for 1000 streams, and maxmemory holds two relays’ buffers', () => {
    expect(pubsub.length).toBe(4);
    const hard = bytes(pubsub[1] as string);
    const soft = bytes(pubsub[2] as string);
    expect(hard).toBeGreaterThanOrEqual(DEFAULT_STREAM_WINDOW_BYTES * 1000);
    expect(soft).toBeLessThanOrEqual(hard);
    expect(Number(pubsub[3])).toBeGreaterThan(0);
    expect(bytes(one('maxmemory'))).toBeGreaterThanOrEqual(2 * hard);
  });

  test('the Kubernetes Redis repeats the same settings', () => {
    const sts = parseAllDocuments(read('infra/k8s/redis.yaml')).map((d) => obj(d.toJS()));
    const k8s = directives(String(obj(sts.find((d) => d.kind === 'ConfigMap')?.data)['redis.conf']));
    for (const name of ['maxmemory-policy', 'maxmemory', 'timeout', 'tcp-keepalive', 'appendonly', 'appendfsync', 'client-output-buffer-limit', 'save']) {
      expect([name, k8s.get(name)]).toEqual([name, conf.get(name)]);
    }
  });

  const redisServer = which('redis-server');
  (redisServer ? test : test.skip)(`redis-server starts with it${redisServer ? '' : ' (SKIPPED: redis-server is not installed)'}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-redis-'));
    // No TCP port (nothing can clash): a Unix socket in the temp dir. The file is loaded all the same.
    const args = [join(root, 'infra/redis.conf'), '--port', '0', '--unixsocket', join(dir, 'redis.sock'), '--dir', dir, '--daemonize', 'no', '--logfile', ''];
    const child = spawn(redisServer as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const closed = new Promise((r) => child.once('close', r));
    let output = '';
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 10_000);
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        if (/ready to accept connections/i.test(output)) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    child.kill('SIGKILL');
    await closed;
    rmSync(dir, { recursive: true, force: true });
    expect({ ready, output: ready ? '' : output }).toEqual({ ready: true, output: '' });
  });
});

// ------------------------------------------------------------------------------------------------

describe('infra/nginx.conf', () => {
  const text = read('infra/nginx.conf');

  test('wildcard TLS server, several relays with keepalive, upgrade headers, X-Forwarded-For, long agent timeouts', () => {
    expect(text).toMatch(/server_name\s+tunnel\.example\.com\s+\*\.tunnel\.example\.com;/);
    const upstream = /upstream\s+burrow_relay\s*\{([^}]*)\}/.exec(text)?.[1] ?? '';
    expect(upstream.match(/^\s*server\s/gm)?.length ?? 0).toBeGreaterThanOrEqual(2);
    expect(upstream).toMatch(/keepalive\s+\d+;/);
    expect(text).toMatch(/proxy_set_header\s+Upgrade\s+\$http_upgrade;/);
    expect(text).toMatch(/proxy_set_header\s+Connection\s+\$connection_upgrade;/);
    expect(text).toMatch(/proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;/);
    expect(text).toMatch(/proxy_set_header\s+Host\s+\$host;/);
    const agent = /location\s+=\s+\/_burrow\/connect\s*\{([^}]*)\}/.exec(text)?.[1] ?? '';
    expect(durationMs(/proxy_read_timeout\s+(\S+);/.exec(agent)?.[1] ?? '0')).toBeGreaterThanOrEqual(3_600_000);
  });

  const nginx = process.env.NGINX_BIN ?? which('nginx');
  const openssl = which('openssl');
  const why = !nginx
    ? ' (SKIPPED: nginx is not installed; apt-get install nginx, or set NGINX_BIN to its binary)'
    : !openssl
      ? ' (SKIPPED: openssl is not installed)'
      : '';
  (why === '' ? test : test.skip)(`nginx -t accepts it with a throw-away certificate${why}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-nginx-'));
    try {
      const { cert, key } = selfSignedCert(dir, 'tunnel.example.com', openssl as string);
      // The file as shipped, with the certificate paths and every file nginx writes moved into the temp dir.
      const paths = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((p) => `${p}_temp_path ${join(dir, p)};`).join(' ');
      const conf = text
        .replace(/ssl_certificate\s+\S+;/, `ssl_certificate ${cert};`)
        .replace(/ssl_certificate_key\s+\S+;/, `ssl_certificate_key ${key};`)
        .replace(/^http\s*\{/m, `http {\n    ${paths} access_log ${join(dir, 'access.log')};`)
        .replace(/^worker_processes[^;]*;/m, (m) => `${m}\npid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')};`);
      expect(conf).toContain(cert);
      writeFileSync(join(dir, 'nginx.conf'), conf);
      const r = spawnSync(nginx as string, ['-t', '-q', '-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], { encoding: 'utf8' });
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------------------------------------

describe('infra/Caddyfile', () => {
  const text = read('infra/Caddyfile');

  test('wildcard site, DNS-01 and internal TLS snippets, balanced upstreams health-checked on /readyz', () => {
    expect(text).toMatch(/^\*\.\{\$BURROW_DOMAIN:[^}]+\}, \{\$BURROW_DOMAIN:[^}]+\} \{/m);
    const importLine = /^\s*import tls_\{\$CADDY_TLS:(\w+)\}/m.exec(text);
    expect(importLine?.[1]).toBe('acme_dns');
    expect(text).toMatch(/^\(tls_acme_dns\) \{[\s\S]*?\n\t\tdns \S+/m);
    expect(text).toMatch(/^\(tls_internal\) \{\n\ttls internal\n\}/m);
    expect(text).toMatch(/\n\t\thealth_uri \/readyz\n/);
    expect(text).toMatch(/\n\t\thealth_port \{\$RELAY_ADMIN_PORT:9091\}\n/);
    expect(text).toMatch(/\n\t\tflush_interval -1\n/);
    expect(text).not.toMatch(/lb_policy (ip_hash|cookie|client_ip_hash)/);
  });

  const caddy = which('caddy');
  (caddy ? test : test.skip)(`caddy validate accepts it (internal TLS)${caddy ? '' : ' (SKIPPED: caddy is not installed)'}`, () => {
    const r = spawnSync(caddy as string, ['validate', '--adapter', 'caddyfile', '--config', join(root, 'infra/Caddyfile')], {
      encoding: 'utf8',
      env: { ...process.env, CADDY_TLS: 'internal', BURROW_DOMAIN: 'tunnel.localhost' },
    });
    expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' });
  });
});

// ------------------------------------------------------------------------------------------------

describe('docs/OPERATIONS.md walkthrough', () => {
  const text = read('docs/OPERATIONS.md');
  const blocks = [...text.matchAll(/^```sh walkthrough\n([\s\S]*?)^```$/gm)].map((m) => m[1] as string);

  test('there is exactly one ```sh walkthrough block', () => {
    expect(blocks.length).toBe(1);
  });

  test('its relays use only real relay flags, with --redis, --node-id, --admin-listen and --port', () => {
    const script = (blocks[0] ?? '').replace(/\\\n/g, ' ');
    const relayLines = script.split('\n').filter((l) => /apps\/relay\/dist\/main\.js|npm run relay/.test(l));
    expect(relayLines.length).toBeGreaterThan(0);
    // Relay flags are what follows main.js (Node's own flags come before it).
    const flags = relayLines.flatMap((l) => l.slice(l.search(/main\.js|npm run relay/)).match(/(?<=\s)--[a-z-]+/g) ?? []);
    expect(flags.filter((f) => !RELAY_FLAGS.has(f))).toEqual([]);
    expect(flags).toEqual(expect.arrayContaining(['--redis', '--node-id', '--admin-listen', '--port']));
  });
});
