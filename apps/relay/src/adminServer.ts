/**
 * The admin listener: a Fastify instance of its own on --admin-listen (never the public port, so
 * scrapes, probes and the admin API cannot be reached through a tunnel host or the apex),
 * serving GET /metrics (Prometheus text), /readyz and /healthz without authentication, and,
 * when an admin token is configured, the admin API under /v1 (tenancy/adminApi.ts). The probes
 * read state through callbacks and change nothing.
 */
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import type { RelayMetrics } from './metrics';
import { ADMIN_BODY_LIMIT_BYTES, type AdminApiOptions, adminApi } from './tenancy/adminApi';

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
  /** The admin API (/v1); unset (no --admin-token): /v1 answers 404. */
  readonly admin?: AdminApiOptions;
  /** For admin API audit lines and errors; unset: no logging. */
  readonly logger?: FastifyBaseLogger;
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

const PROBE_ROUTES = ['GET /metrics', 'GET /readyz', 'GET /healthz'];

function sendJson(reply: FastifyReply, status: number, body: object): FastifyReply {
  return reply.code(status).header('cache-control', 'no-store').type('application/json; charset=utf-8').send(body);
}

/** The admin app, unstarted (tests use inject()); startAdminServer listens. */
export function buildAdminApp(options: Omit<AdminServerOptions, 'listen'>): FastifyInstance {
  const { metrics, nodeId } = options;
  const app = Fastify({
    ...(options.logger !== undefined ? { loggerInstance: options.logger } : { logger: false }),
    logController: new LogController({ disableRequestLogging: true }),
    requestTimeout: ADMIN_REQUEST_TIMEOUT_MS,
    keepAliveTimeout: 5_000,
    forceCloseConnections: true,
    bodyLimit: ADMIN_BODY_LIMIT_BYTES,
    // Strict schemas: an unknown property is an error (not silently dropped), "5" is not 5.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
  });
  app.server.headersTimeout = ADMIN_REQUEST_TIMEOUT_MS;

  app.get('/metrics', async (_req, reply) => {
    try {
      const text = await metrics.metricsText();
      return reply.code(200).header('cache-control', 'no-store').type(metrics.contentType).send(text);
    } catch (err) {
      return sendJson(reply, 500, { error: 'metrics collection failed', message: String(err) });
    }
  });
  app.get('/readyz', async (_req, reply) => {
    const r = readiness(options.readiness());
    if (r.ready && r.degraded !== undefined) return sendJson(reply, 200, { status: 'degraded', node: nodeId, ...r.degraded });
    if (r.ready) return sendJson(reply, 200, { status: 'ready', node: nodeId });
    return sendJson(reply, 503, { status: 'not ready', node: nodeId, reason: r.reason, message: r.message });
  });
  app.get('/healthz', async (_req, reply) => sendJson(reply, 200, { status: 'ok', node: nodeId }));

  if (options.admin !== undefined) app.register(adminApi, { prefix: '/v1', ...options.admin });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?', 1)[0] as string;
    if (path === '/v1' || path.startsWith('/v1/')) {
      // Only reached with the admin API off (when on, its own handler answers /v1).
      return sendJson(reply, 404, { error: { code: 'not_found', message: 'the admin API is off: start the relay with --admin-token' } });
    }
    return sendJson(reply, 404, { error: 'not found', routes: PROBE_ROUTES });
  });
  return app;
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { host, port } = parseListen(options.listen);
  const app = buildAdminApp(options);
  try {
    await app.listen({ port, host });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    await app.close().catch(() => {});
    const hint = err.code === 'EADDRINUSE' ? '; another process has it: choose another port or --admin-listen off' : '';
    throw new AdminListenError(`admin listener cannot listen on ${options.listen}: ${err.code ?? err.message}${hint}`, { cause: err });
  }
  app.server.on('error', () => {
    // After listening, only accept failures land here; the next connection is served as usual.
  });
  const bound = app.server.address() as AddressInfo;
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= app.close().then(() => {});
      return closing;
    },
  };
}
