/**
 * One relay of the soak as its own process (apps/relay/dist/main.js), so its memory is its own:
 * started with --expose-gc and relayProbe.js preloaded, sampled over IPC (memory before and after
 * a forced GC, handles, CPU), scraped over its admin listener (/metrics), its log lines counted.
 * Knows nothing of traffic or faults.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { cleanups, waitFor } from '../../test/kit';

const ROOT = join(__dirname, '../..');
const RELAY_BIN = join(ROOT, 'apps/relay/dist/main.js');
const { shebangNodeFlags } = require('../lib/node-flags') as { shebangNodeFlags: (script: string) => string[] };
const PROBE = join(__dirname, 'relayProbe.js');

/** process.memoryUsage() as the probe sends it. */
export interface MemoryUsage {
  readonly rss: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

export interface ProbeSample {
  readonly before: MemoryUsage;
  /** After a forced full GC: what is really retained. */
  readonly after: MemoryUsage;
  readonly gc: boolean;
  readonly gcMs: number;
  /** Active handles and requests by type (TCPSocketWrap, Timeout, …). */
  readonly resources: Record<string, number>;
  readonly cpuMs: number;
}

/** Parsed Prometheus text: value of a series written exactly as exposed, e.g. burrow_streams_open{side="agent"}. */
export type Metrics = ReadonlyMap<string, number>;

export interface RelayNodeOptions {
  /** a, b: names the node in the report. */
  readonly name: string;
  readonly port: number;
  readonly adminPort: number;
  /** host:port names agents dial this relay by besides its own (the fault proxies in front of it). */
  readonly extraAudiences: readonly string[];
  readonly redisUrl?: string;
  readonly pingIntervalMs: number;
  readonly leaseTtlMs: number;
}

export interface RelayNode {
  readonly name: string;
  readonly nodeId: string;
  readonly port: number;
  /** The apex URL agents dial directly. */
  readonly url: string;
  readonly child: ChildProcess;
  /** Memory, handles and CPU; `gc` false: without the forced GC (a cheap look at the handles). */
  sample(gc?: boolean): Promise<ProbeSample>;
  metrics(): Promise<Metrics>;
  /** Warn/error log lines by "level: message", and the last few lines. */
  logSummary(): { readonly counts: Record<string, number>; readonly last: readonly string[]; readonly stderr: string };
  /** SIGTERM (drain, then exit), SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
}

/** GET over loopback with a deadline; resolves with status and body. */
export function httpGet(port: number, path: string, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} on port ${port}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export function parseMetrics(text: string): Metrics {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    if (i > 0) out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export async function startRelayNode(options: RelayNodeOptions): Promise<RelayNode> {
  const nodeId = `soak-${options.name}-${process.pid}`;
  const args = [
    // As burrow-relay runs (its shebang's Node flags), so the memory judged is the shipped relay's.
    ...shebangNodeFlags(join(ROOT, 'apps/relay/src/main.ts')),
    '--expose-gc',
    '--require',
    PROBE,
    RELAY_BIN,
    '--host',
    '127.0.0.1',
    '--port',
    String(options.port),
    '--domain',
    'localhost',
    '--admin-listen',
    `127.0.0.1:${options.adminPort}`,
    '--node-id',
    nodeId,
    '--log-level',
    'warn',
    // The traffic mix downloads 1 MiB bodies (the default limit is 500 KB).
    '--max-body-bytes',
    '2000000',
    '--ping-interval-ms',
    String(options.pingIntervalMs),
    '--drain-timeout-ms',
    '1000',
    ...(options.extraAudiences.length > 0 ? ['--extra-audiences', options.extraAudiences.join(',')] : []),
    ...(options.redisUrl !== undefined ? ['--redis', options.redisUrl, '--lease-ttl-ms', String(options.leaseTtlMs)] : []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], cwd: ROOT });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const counts: Record<string, number> = {};
  const last: string[] = [];
  let stderr = '';
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    let key = line.slice(0, 120);
    try {
      const j = JSON.parse(line) as { level?: number; msg?: string };
      key = `${LEVELS[j.level ?? 0] ?? j.level}: ${j.msg ?? ''}`;
    } catch {
      // not JSON: counted as is
    }
    counts[key] = (counts[key] ?? 0) + 1;
    last.push(line.slice(0, 2000));
    if (last.length > 20) last.shift();
  });
  child.stderr?.on('data', (c: Buffer) => {
    if (stderr.length < 20_000) stderr += c.toString('utf8');
  });

  let seq = 0;
  const pending = new Map<number, (s: ProbeSample) => void>();
  child.on('message', (m: { type?: string; id?: number } & ProbeSample) => {
    if (m?.type !== 'sample' || m.id === undefined) return;
    pending.get(m.id)?.(m);
    pending.delete(m.id);
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    })();
    return stopping;
  };
  cleanups.push(stop);

  await waitFor(
    async () => {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`relay ${options.name} exited at start (${child.exitCode ?? child.signalCode}): ${stderr}`);
      try {
        return (await httpGet(options.adminPort, '/readyz', 1000)).status === 200;
      } catch {
        return false;
      }
    },
    15_000,
    `relay ${options.name} ready on /readyz`,
  );

  return {
    name: options.name,
    nodeId,
    port: options.port,
    url: `http://localhost:${options.port}`,
    child,
    sample: (gc = true) =>
      new Promise<ProbeSample>((resolve, reject) => {
        const id = ++seq;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`relay ${options.name}: no memory sample within 5 s`));
        }, 5000);
        pending.set(id, (s) => {
          clearTimeout(timer);
          resolve(s);
        });
        child.send({ type: 'sample', id, gc }, (err) => {
          if (err !== null && err !== undefined) {
            clearTimeout(timer);
            pending.delete(id);
            reject(err);
          }
        });
      }),
    metrics: async () => {
      const r = await httpGet(options.adminPort, '/metrics');
      if (r.status !== 200) throw new Error(`relay ${options.name}: /metrics answered ${r.status}`);
      return parseMetrics(r.body);
    },
    logSummary: () => ({ counts: { ...counts }, last: [...last], stderr }),
    stop,
  };
}
