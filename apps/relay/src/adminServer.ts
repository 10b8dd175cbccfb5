/**
 * The admin listener: a small node:http server of its own on --admin-listen (never the public
 * port, so scrapes and probes cannot be reached through a tunnel host or the apex), serving
 * GET /metrics (Prometheus text), /readyz and /healthz. It reads state through callbacks and
 * changes nothing.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RelayMetrics } from './metrics';

/** Why /readyz answers 503, most decisive first. */
export type NotReadyReason = 'closing' | 'draining' | 'not-listening';

export interface ReadinessState {
  /** The public listener accepts connections. */
  readonly listening: boolean;
  readonly busUp: boolean;
  readonly draining: boolean;
  /** close() began. */
  readonly closing: boolean;
}

export type Readiness =
  /** degraded: ready, but without the bus (Redis): it serves the tunnels whose agents it holds. */
  | { readonly ready: true; readonly degraded?: { readonly reason: 'bus-down'; readonly message: string } }
  | { readonly ready: false; readonly reason: NotReadyReason; readonly message: string };

/** Ready means: send this node new traffic. */
export function readiness(s: ReadinessState): Readiness {
  if (s.closing) return { ready: false, reason: 'closing', message: 'the relay is shutting down' };
  if (s.draining) return { ready: false, reason: 'draining', message: 'the relay is draining: finishing requests in flight, taking no new agents' };
  if (!s.listening) return { ready: false, reason: 'not-listening', message: 'the public listener is not accepting connections' };
  // Still ready: every node loses Redis at once, and a balancer with no ready node serves nobody,
  // while each node can still serve the tunnels whose agents it holds.
  if (!s.busUp) return { ready: true, degraded: { reason: 'bus-down', message: 'the bus (Redis) is unreachable: only tunnels held by this node are served' } };
  return { ready: true };
}

export interface AdminServerOptions {
  /** host:port, IPv6 in brackets; port 0 picks a free one. */
  readonly listen: string;
  readonly nodeId: string;
  readonly metrics: RelayMetrics;
  readiness(): ReadinessState;
}

export interface AdminServer {
  /** http://host:port actually bound. */
  readonly url: string;
  /** Stops listening and drops open connections. Idempotent. */
  close(): Promise<void>;
}

export class AdminListenError extends Error {
  readonly code = 'BURROW_ERR_ADMIN_LISTEN';
}

/** Header and request deadlines: scrapers and probes send tiny requests. */
const ADMIN_REQUEST_TIMEOUT_MS = 10_000;

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(listen);
  if (m === null || Number(m[2]) > 65535) throw new AdminListenError(`--admin-listen: "${listen}" is not host:port`);
  const host = (m[1] as string).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(m[2]) };
}

function sendJson(res: ServerResponse, status: number, body: object, head: boolean): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': bytes.length, 'cache-control': 'no-store' });
  res.end(head ? undefined : bytes);
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { host, port } = parseListen(options.listen);
  const { metrics, nodeId } = options;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      sendJson(res, 404, { error: 'not found', routes: ['GET /metrics', 'GET /readyz', 'GET /healthz'] }, head);
      return;
    }
    switch (path) {
      case '/metrics':
        metrics.metricsText().then(
          (text) => {
            const bytes = Buffer.from(text);
            res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': bytes.length, 'cache-control': 'no-store' });
            res.end(head ? undefined : bytes);
          },
          (err: unknown) => sendJson(res, 500, { error: 'metrics collection failed', message: String(err) }, head),
        );
        return;
      case '/readyz': {
        const r = readiness(options.readiness());
        if (r.ready && r.degraded !== undefined) sendJson(res, 200, { status: 'degraded', node: nodeId, ...r.degraded }, head);
        else if (r.ready) sendJson(res, 200, { status: 'ready', node: nodeId }, head);
        else sendJson(res, 503, { status: 'not ready', node: nodeId, reason: r.reason, message: r.message }, head);
        return;
      }
      case '/healthz':
        sendJson(res, 200, { status: 'ok', node: nodeId }, head);
        return;
      default:
        sendJson(res, 404, { error: 'not found', routes: ['GET /metrics', 'GET /readyz', 'GET /healthz'] }, head);
    }
  };

  const server = createServer({ headersTimeout: ADMIN_REQUEST_TIMEOUT_MS, requestTimeout: ADMIN_REQUEST_TIMEOUT_MS, keepAliveTimeout: 5_000 }, handle);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const hint = err.code === 'EADDRINUSE' ? '; another process has it: choose another port or --admin-listen off' : '';
      reject(new AdminListenError(`admin listener cannot listen on ${options.listen}: ${err.code ?? err.message}${hint}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
  server.on('error', () => {
    // After listening, only accept failures land here; the next connection is served as usual.
  });
  const bound = server.address() as AddressInfo;
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
