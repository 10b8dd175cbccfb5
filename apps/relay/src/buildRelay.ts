/**
 * Builds an unstarted relay: a Fastify app for the relay's own routes on the apex host, with
 * tunnel-host traffic (requests and upgrades) dispatched before Fastify routing ever sees it,
 * so relay routes can never shadow a path on a tunnel. main.ts alone reads argv and listens.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { type Bus, MemoryBus, MemoryHub } from '@burrow/bus';
import { type ErrorCode, encodeReason, FrameType, PROTOCOL_VERSION, urlAuthority } from '@burrow/protocol';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { AgentSession } from './agentSession';
import type { RelayConfig } from './config';
import { rawErrorResponse, renderError, sendError, wantsJson } from './errorResponse';
import { makeHostRouter } from './hostRouter';
import { IngressTable } from './ingressTable';
import { LocalSessions } from './localSessions';
import { fileNameBindings } from './nameStore';
import type { RelayContext } from './relayContext';
import { handleTunnelRequest } from './tunnelHttp';
import { handleTunnelUpgrade } from './tunnelUpgrade';
import { RELAY_VERSION } from './version';

/** Path of the agent endpoint on the apex host. */
export const AGENT_CONNECT_PATH = '/_burrow/connect';
/** A WebSocket message from an agent carries whole frames, at most this many bytes. */
export const MAX_AGENT_MESSAGE_BYTES = 1024 * 1024;

export interface RelayDeps {
  /** Defaults to a MemoryBus of its own (a single node). */
  readonly bus?: Bus;
  /** Defaults to Fastify's pino at config.logLevel. */
  readonly logger?: FastifyBaseLogger;
}

export interface RelayStats {
  readonly sessions: number;
  readonly activeSessions: number;
  readonly ingressStreams: number;
  readonly agentStreams: number;
}

export interface Relay {
  readonly app: FastifyInstance;
  readonly config: RelayConfig;
  readonly nodeId: string;
  /** Listens on config.host:config.port; resolves to the apex URL. */
  listen(): Promise<string>;
  /** Apex URL (valid after listen). */
  publicUrl(): string;
  stats(): RelayStats;
  /** Closes every agent session (GOAWAY), every stream, the server and the bus. Idempotent. */
  close(): Promise<void>;
}

export async function buildRelay(config: RelayConfig, deps: RelayDeps = {}): Promise<Relay> {
  const bus =
    deps.bus ??
    new MemoryBus(
      config.nodeId,
      new MemoryHub({ maxNames: config.maxNames, ...(config.dataDir === undefined ? {} : { names: fileNameBindings(config.dataDir) }) }),
    );
  const routeHost = makeHostRouter(config.domain);
  let ctxRef: RelayContext | undefined;
  let boundPort = config.port;

  const serverFactory = (fastifyHandler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    const server = createServer({ requireHostHeader: true, headersTimeout: 20_000, requestTimeout: 300_000, keepAliveTimeout: 5_000 }, (req, res) => {
      const route = routeHost(req.headers.host);
      const ctx = ctxRef;
      if (route.kind === 'tunnel' && ctx !== undefined) handleTunnelRequest(ctx, req, res, route.label);
      else if (route.kind === 'invalid') sendError(req, res, 'BURROW_ERR_UNKNOWN_TUNNEL', `"${route.host}" is not a tunnel name`);
      else fastifyHandler(req, res);
    });
    const emit = server.emit.bind(server) as (event: string, ...args: unknown[]) => boolean;
    // Upgrades on tunnel hosts never reach Fastify (or @fastify/websocket): they are tunnel traffic.
    server.emit = ((event: string, ...args: unknown[]): boolean => {
      if (event === 'upgrade') {
        const [req, socket, head] = args as [IncomingMessage, Duplex, Buffer];
        const route = routeHost(req.headers.host);
        const ctx = ctxRef;
        if (route.kind === 'tunnel' && ctx !== undefined) {
          handleTunnelUpgrade(ctx, req, socket, head, route.label);
          return true;
        }
        if (route.kind === 'invalid') {
          socket.on('error', () => {});
          socket.end(rawErrorResponse('BURROW_ERR_UNKNOWN_TUNNEL', `"${route.host}" is not a tunnel name`, req.headers.accept));
          return true;
        }
      }
      return emit(event, ...args);
    }) as Server['emit'];
    return server;
  };

  const app = Fastify({
    ...(deps.logger !== undefined ? { loggerInstance: deps.logger } : { logger: { level: config.logLevel } }),
    serverFactory,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    // Requests Node cannot parse never reach a handler; answer them in the relay's own format.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const code: ErrorCode =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? 'BURROW_ERR_HEADERS_TOO_LARGE'
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? 'BURROW_ERR_CLIENT_TIMEOUT'
            : 'BURROW_ERR_BAD_REQUEST';
      app.log.debug({ code, reason: err.code }, 'unparseable request');
      socket.end(rawErrorResponse(code, code === 'BURROW_ERR_BAD_REQUEST' ? `malformed HTTP request (${err.code ?? 'parse error'})` : undefined, undefined));
    },
  });

  const sessions = new LocalSessions();
  const ingress = new IngressTable(bus, config.streamWindowBytes);
  const publicUrl = (): string => config.publicUrl ?? `http://${config.domain}${boundPort === 80 ? '' : `:${boundPort}`}`;
  // Fixed by config (or http when derived); never parsed per request.
  const proto = config.publicUrl === undefined ? 'http' : new URL(config.publicUrl).protocol.slice(0, -1);
  const publicProto = (): string => proto;
  // Whom an agent's token may name: this relay's public URL, its domain (at the bound port or
  // none) and configured extras. Never the Host header: the connecting client chooses that.
  const agentAudiences = (): string[] => [urlAuthority(publicUrl()), config.domain, `${config.domain}:${boundPort}`, ...config.extraAudiences];
  const ctx: RelayContext = { config, bus, nodeId: bus.nodeId, sessions, ingress, log: app.log, publicUrl, publicProto };
  ctxRef = ctx;

  await bus.subscribe((msg) => {
    switch (msg.kind) {
      case 'toIngress':
        ingress.receive(msg.frame);
        return;
      case 'toSession': {
        const session = sessions.byId.get(msg.sessionId);
        if (session !== undefined) session.fromIngress(msg);
        else if (msg.frame.type !== FrameType.RESET) {
          // The session is gone (a race with its close): answer at once rather than time out.
          bus.publish(msg.replyNode, {
            kind: 'toIngress',
            frame: { type: FrameType.RESET, flags: 0, streamId: msg.frame.streamId, payload: RESET_AGENT_GONE },
          });
        }
        return;
      }
      case 'sessionReplaced':
        sessions.byId.get(msg.sessionId)?.close('BURROW_ERR_SESSION_REPLACED', 'a newer session of this tunnel connected');
        return;
    }
  });

  await app.register(websocket, { options: { maxPayload: MAX_AGENT_MESSAGE_BYTES, perMessageDeflate: false } });

  app.get(AGENT_CONNECT_PATH, { websocket: true }, (socket, req) => {
    const session = new AgentSession(ctx, socket, req.socket.remoteAddress ?? '', agentAudiences());
    sessions.add(session);
    session.start();
  });

  app.get('/healthz', async () => ({ status: 'ok', node: ctx.nodeId, sessions: sessions.byId.size }));
  app.get('/version', async () => ({ name: 'burrow-relay', version: RELAY_VERSION, protocol: PROTOCOL_VERSION }));
  app.get('/', async (_req, reply) => {
    reply.type('text/plain; charset=utf-8');
    return `burrow relay ${RELAY_VERSION}\nTunnels are served at ${publicUrl().replace('://', '://<label>.')}\nAgents connect with: burrow http <port> --relay ${publicUrl()}\n`;
  });
  app.setNotFoundHandler((req, reply) => {
    const e = renderError(
      'BURROW_ERR_NOT_FOUND',
      `no relay route ${req.method} ${req.url}; tunnels are at <label>.${config.domain}`,
      wantsJson(req.headers.accept),
    );
    reply.code(e.status).header('x-burrow-error', 'BURROW_ERR_NOT_FOUND').type(e.contentType).send(e.body);
  });

  const tickMs = Math.min(1000, Math.max(10, Math.floor(config.pingIntervalMs / 4)));
  let lastTick = Date.now();
  const tick = setInterval(() => {
    const now = Date.now();
    // After a stall of this process, let pending socket reads run before judging anyone.
    const stalled = now - lastTick > 3 * tickMs;
    lastTick = now;
    if (stalled) return;
    for (const s of sessions.byId.values()) s.tick(now);
  }, tickMs);
  tick.unref();

  let closing: Promise<void> | undefined;
  return {
    app,
    config,
    nodeId: ctx.nodeId,
    publicUrl,
    async listen() {
      await app.listen({ port: config.port, host: config.host });
      boundPort = (app.server.address() as AddressInfo).port;
      return publicUrl();
    },
    stats() {
      let agentStreams = 0;
      let active = 0;
      for (const s of sessions.byId.values()) {
        agentStreams += s.streamCount;
        if (s.isActive) active++;
      }
      return { sessions: sessions.byId.size, activeSessions: active, ingressStreams: ingress.size, agentStreams };
    },
    close() {
      closing ??= (async () => {
        clearInterval(tick);
        for (const s of [...sessions.byId.values()]) s.close('BURROW_ERR_RELAY_SHUTTING_DOWN', 'relay is shutting down; reconnect');
        ingress.abortAll('BURROW_ERR_RELAY_SHUTTING_DOWN');
        app.server.closeAllConnections?.();
        await app.close();
        await bus.close();
      })();
      return closing;
    },
  };
}

const RESET_AGENT_GONE = encodeReason('BURROW_ERR_AGENT_DISCONNECTED', 'the agent disconnected before the response completed');
