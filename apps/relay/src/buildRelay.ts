/**
 * Builds an unstarted relay: a Fastify app for the relay's own routes on the apex host, with
 * tunnel-host traffic (requests and upgrades) dispatched before Fastify routing ever sees it,
 * so relay routes can never shadow a path on a tunnel. main.ts alone reads argv and listens.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Bus, BusMessage } from '@burrow/bus';
import { type ErrorCode, encodeReason, FrameType, hostPort, PROTOCOL_VERSION, urlAuthority } from '@burrow/protocol';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { AccessLog } from './accessLog';
import { type AdminServer, startAdminServer } from './adminServer';
import { AgentSession } from './agentSession';
import type { RelayConfig } from './config';
import { DeadNodes } from './deadNodes';
import { rawErrorResponse, renderError, sendError, wantsJson } from './errorResponse';
import { HolderCache } from './holderCache';
import { makeHostRouter } from './hostRouter';
import { IngressTable } from './ingressTable';
import { LeaseKeeper } from './leaseKeeper';
import { LocalSessions } from './localSessions';
import { makeBus } from './makeBus';
import { RelayMetrics } from './metrics';
import { makePathRouter, sendRedirect } from './pathRouter';
import { PeerResets } from './peerResets';
import { PeerWatch } from './peerWatch';
import { checkPublicRequest } from './publicRequestCheck';
import { type RelayContext, tunnelUrl } from './relayContext';
import { TcpIngress } from './tcpIngress';
import { makeFleet } from './tenancy/fleet';
import { makeTenantStore } from './tenancy/makeTenantStore';
import { Tenancy } from './tenancy/tenancy';
import type { TenantStore } from './tenancy/types';
import { handleTunnelRequest } from './tunnelHttp';
import { handleTunnelUpgrade } from './tunnelUpgrade';
import { RELAY_VERSION } from './version';

/** Path of the agent endpoint on the apex host. */
export const AGENT_CONNECT_PATH = '/_burrow/connect';
/** A whole public request (head and body) must arrive within this long (Node's requestTimeout); bodies also have --body-idle-timeout-ms. */
const REQUEST_TIMEOUT_MS = 300_000;
/** A WebSocket message from an agent carries whole frames, at most this many bytes. */
export const MAX_AGENT_MESSAGE_BYTES = 1024 * 1024;

export interface RelayDeps {
  /** Defaults to a MemoryBus of its own (a single node). */
  readonly bus?: Bus;
  /** Where tenants and tokens live (token auth, reserved names, history). */
  readonly tenantStore?: TenantStore;
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
  /** http://host:port of the admin listener (/metrics, /readyz, /healthz) once listening; undefined when config.adminListen is off. */
  adminUrl(): string | undefined;
  stats(): RelayStats;
  /** True once drain() began. */
  isDraining(): boolean;
  /**
   * Graceful shutdown, first half: refuse new agents, ask connected agents to move to another
   * node (GOAWAY), let in-flight requests finish. Resolves when nothing is in flight (every
   * session moved away or idle for a moment) or at config.drainTimeoutMs. Then call close().
   */
  drain(): Promise<void>;
  /** Closes every agent session (GOAWAY), every stream, the server and the bus. Idempotent. */
  close(): Promise<void>;
}

export async function buildRelay(config: RelayConfig, deps: RelayDeps = {}): Promise<Relay> {
  const routeHost = makeHostRouter(config.domain);
  const routePath = makePathRouter(config);
  let draining = false;
  let ctxRef: RelayContext | undefined;
  let boundPort = config.port;

  const serverOptions = {
    // Host is checked by checkPublicRequest, which answers in the relay's format.
    requireHostHeader: false,
    headersTimeout: config.headersTimeoutMs,
    requestTimeout: Math.max(REQUEST_TIMEOUT_MS, config.headersTimeoutMs),
    // Node looks for expired heads only this often (30 s by default): a short --headers-timeout-ms needs it sooner.
    connectionsCheckingInterval: Math.min(1000, Math.max(25, Math.floor(config.headersTimeoutMs / 4))),
    keepAliveTimeout: 5_000,
  };
  const serverFactory = (fastifyHandler: (req: IncomingMessage, res: ServerResponse) => void): Server => {
    // Connections whose response so far says Connection: close (RFC 9112 §9.6: requests pipelined
    // after it must not be processed; Node would still parse and hand them on, to reach an app unanswered).
    const closing = new WeakSet<object>();
    const server = createServer(serverOptions, (req, res) => {
      if (closing.has(req.socket)) {
        req.resume();
        return;
      }
      handlePublicRequest(req, res);
      if (!res.shouldKeepAlive) closing.add(req.socket);
    });
    const handlePublicRequest = (req: IncomingMessage, res: ServerResponse): void => {
      const refusal = checkPublicRequest(req);
      if (refusal !== undefined) {
        app.log.info({ method: req.method, code: refusal.code }, `public request refused: ${refusal.message}`);
        sendError(req, res, refusal.code, refusal.message, true);
        req.resume();
        return;
      }
      const route = routeHost(req.headers.host);
      const ctx = ctxRef;
      if (route.kind === 'tunnel' && ctx !== undefined) handleTunnelRequest(ctx, req, res, route.label);
      else if (route.kind === 'invalid') sendError(req, res, 'BURROW_ERR_UNKNOWN_TUNNEL', `"${route.host}" is not a tunnel name`);
      else {
        // The apex: the base path comes off; with path routing, <base>/t/<label>/… is that tunnel.
        const byPath = routePath(req.url);
        if (byPath.kind === 'tunnel' && ctx !== undefined) {
          req.url = byPath.url;
          handleTunnelRequest(ctx, req, res, byPath.label);
        } else if (byPath.kind === 'redirect') sendRedirect(req, res, byPath.location);
        else if (byPath.kind === 'invalid') sendError(req, res, 'BURROW_ERR_UNKNOWN_TUNNEL', `"${byPath.name}" is not a tunnel name`);
        else {
          if (byPath.kind === 'relay') req.url = byPath.url;
          fastifyHandler(req, res);
        }
      }
    };
    // CONNECT (authority-form) is no request a tunnel or the relay serves; without a listener Node just drops the socket.
    server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      app.log.info({ method: req.method }, 'public request refused: CONNECT is not served');
      socket.on('error', () => {});
      socket.end(rawErrorResponse('BURROW_ERR_BAD_REQUEST', 'CONNECT is not served by this relay', req.headers.accept));
    });
    // Expect with anything but 100-continue: Node's own answer would be an uncoded 417.
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      app.log.info({ method: req.method, expect: req.headers.expect }, 'public request refused: unsupported Expect');
      sendError(req, res, 'BURROW_ERR_EXPECTATION_FAILED', 'only "Expect: 100-continue" is supported', true);
      req.resume();
    });
    const emit = server.emit.bind(server) as (event: string, ...args: unknown[]) => boolean;
    // Upgrades on tunnel hosts never reach Fastify (or @fastify/websocket): they are tunnel traffic.
    server.emit = ((event: string, ...args: unknown[]): boolean => {
      if (event === 'upgrade') {
        const [req, socket, head] = args as [IncomingMessage, Duplex, Buffer];
        const refusal = checkPublicRequest(req);
        if (refusal !== undefined) {
          app.log.info({ method: req.method, code: refusal.code }, `public upgrade refused: ${refusal.message}`);
          socket.on('error', () => {});
          socket.end(rawErrorResponse(refusal.code, refusal.message, req.headers.accept));
          return true;
        }
        const route = routeHost(req.headers.host);
        const ctx = ctxRef;
        if (route.kind === 'tunnel' && ctx !== undefined) {
          handleTunnelUpgrade(ctx, req, socket, head, route.label);
          return true;
        }
        if (route.kind === 'apex') {
          const byPath = routePath(req.url);
          // <base>/t/<label> without its slash too: WebSocket clients do not follow redirects.
          if ((byPath.kind === 'tunnel' || byPath.kind === 'redirect') && ctx !== undefined) {
            req.url = byPath.url;
            handleTunnelUpgrade(ctx, req, socket, head, byPath.label);
            return true;
          }
          if (byPath.kind === 'invalid') {
            socket.on('error', () => {});
            socket.end(rawErrorResponse('BURROW_ERR_UNKNOWN_TUNNEL', `"${byPath.name}" is not a tunnel name`, req.headers.accept));
            return true;
          }
          if (byPath.kind === 'relay') req.url = byPath.url;
        }
        if (draining && (req.url ?? '').split('?')[0] === AGENT_CONNECT_PATH) {
          // Refused before the WebSocket handshake so the agent's dialer sees a plain 503 and tries elsewhere.
          socket.on('error', () => {});
          socket.end(rawErrorResponse('BURROW_ERR_RELAY_SHUTTING_DOWN', 'this relay node is draining; connect to another node', req.headers.accept));
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
      const answer = rawErrorResponse(code, code === 'BURROW_ERR_BAD_REQUEST' ? `malformed HTTP request (${err.code ?? 'parse error'})` : undefined, undefined);
      // Bad bytes pipelined behind a complete request: written now, the error page would land before
      // or inside that request's response. It goes out after the responses in flight (Node hands the
      // next queued one to the socket as one finishes), unless one of them closes the connection.
      // When the bad bytes broke the body of the request in flight, it is answered now, or cut if its
      // response already began.
      const answerWhenIdle = (): void => {
        const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
        if (inFlight?.req.complete && !inFlight.destroyed) inFlight.once('close', answerWhenIdle);
        else if (!socket.writable || inFlight?.headersSent === true) socket.destroy();
        else socket.end(answer);
      };
      answerWhenIdle();
    },
  });

  const bus = deps.bus ?? makeBus(config, app.log);
  // Tenants and tokens: Redis when the bus is Redis, else --data-dir (or memory).
  const ownStore = deps.tenantStore === undefined;
  const tenantStore = deps.tenantStore ?? makeTenantStore(config, app.log);
  const sessions = new LocalSessions();
  const peerResets = new PeerResets(bus);
  // A public stream ended here on its own (the holder looked gone, the bus was down): the holder ends its half too.
  const ingress = new IngressTable(bus, config.streamWindowBytes, (holder, streamId, reason) =>
    peerResets.send(holder.nodeId, {
      kind: 'toSession',
      sessionId: holder.sessionId,
      replyNode: bus.nodeId,
      frame: { type: FrameType.RESET, flags: 0, streamId, payload: encodeReason(reason.code, reason.message) },
    }),
  );
  // Ends in the base path, if any (normalized so by config).
  const publicUrl = (): string => config.publicUrl ?? `http://${config.domain}${boundPort === 80 ? '' : `:${boundPort}`}${config.basePath}`;
  // Fixed by config (or http when derived); never parsed per request.
  const proto = config.publicUrl === undefined ? 'http' : new URL(config.publicUrl).protocol.slice(0, -1);
  const publicProto = (): string => proto;
  // Whom an agent's token may name: this relay's public URL, its domain (at the bound port or
  // none) and configured extras. Never the Host header: the connecting client chooses that.
  const agentAudiences = (): string[] => [urlAuthority(publicUrl()), config.domain, `${config.domain}:${boundPort}`, ...config.extraAudiences];
  const deadNodes = new DeadNodes(bus.leaseTtlMs);
  // Sources are read at scrape time only, by then `relay` and `leases` exist.
  const metrics = new RelayMetrics({
    nodeId: bus.nodeId,
    version: RELAY_VERSION,
    processMetrics: config.adminListen !== 'off',
    sources: {
      relayStats: () => ({ ...relay.stats(), tunnels: sessions.byLabel.size }),
      busStats: () => bus.stats(),
      busUp: () => bus.isUp(),
      draining: () => draining,
      leaseStats: () => leases.stats(),
    },
  });
  const accessLog = new AccessLog(app.log, { enabled: config.accessLog, nodeId: bus.nodeId, trustedProxies: config.trustedProxies });
  const ctx: RelayContext = {
    config,
    bus,
    nodeId: bus.nodeId,
    sessions,
    ingress,
    deadNodes,
    peerResets,
    isDraining: () => draining,
    log: app.log,
    metrics,
    accessLog,
    tenancy: new Tenancy(
      config,
      bus,
      tenantStore,
      makeFleet(bus, () => ctx.tenancy.localLive()),
      sessions,
      app.log,
    ),
    tenantStreams: new Map(),
    busState: { lostAtMs: 0, recoveredAtMs: 0 },
    holderCache: new HolderCache(),
    publicUrl,
    publicProto,
  };
  ctxRef = ctx;
  const leases = new LeaseKeeper(ctx);
  const tcp = new TcpIngress(ctx);
  const peers = new PeerWatch(ctx);

  const onMessage = (msg: BusMessage): void => {
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
            // An OPEN for a session that is gone never reached an agent: the ingress may send it again.
            frame: {
              type: FrameType.RESET,
              flags: 0,
              streamId: msg.frame.streamId,
              payload: msg.frame.type === FrameType.OPEN ? RESET_SESSION_GONE : RESET_AGENT_GONE,
            },
          });
        }
        return;
      }
      case 'sessionReplaced':
        sessions.byId.get(msg.sessionId)?.retire('BURROW_ERR_SESSION_REPLACED', 'a newer session of this tunnel connected');
        return;
      case 'closeSession':
        sessions.byId.get(msg.sessionId)?.close(msg.code);
        return;
    }
  };

  await bus.subscribe({
    message: onMessage,
    undelivered(nodeId, messages, reason) {
      const code: ErrorCode = reason === 'bus-down' ? 'BURROW_ERR_BUS_UNAVAILABLE' : 'BURROW_ERR_NODE_UNREACHABLE';
      const message = reason === 'bus-down' ? 'this relay node cannot reach Redis' : 'the relay node holding this tunnel is gone';
      if (reason === 'no-listener') deadNodes.mark(nodeId);
      let toIngress = false;
      for (const m of messages) {
        if (m.kind === 'toSession' && m.frame.type !== FrameType.RESET) ingress.abortStream(m.frame.streamId, code, message);
        else if (m.kind === 'toIngress') toIngress = true;
        // A RESET lost to a bus outage goes out once the bus is back (the other node may have missed nothing else).
        if (reason === 'bus-down' && 'frame' in m && m.frame.type === FrameType.RESET) peerResets.keep(nodeId, m);
      }
      // Replies that reached nobody: that node's requests can never complete.
      if (toIngress) peers.cut(new Set([nodeId]), code, 'the relay node that took this request is gone');
    },
    connectionChanged(up) {
      if (up) {
        ctx.busState.recoveredAtMs = Date.now();
        app.log.info({ resets: peerResets.size }, 'bus connection is back; re-announcing leases');
        peerResets.flush();
        void leases.renewNow();
      } else {
        ctx.busState.lostAtMs = Date.now();
        app.log.warn('bus connection lost; serving only tunnels whose agents are on this node');
        void peers.check();
      }
    },
  });
  leases.start();
  ctx.tenancy.start();
  peers.start();

  await app.register(websocket, { options: { maxPayload: MAX_AGENT_MESSAGE_BYTES, perMessageDeflate: false } });

  app.get(AGENT_CONNECT_PATH, { websocket: true }, (socket, req) => {
    const ip = req.socket.remoteAddress ?? '';
    const peer = hostPort(ip, req.socket.remotePort ?? 0);
    const session = new AgentSession(ctx, socket, ip, peer, agentAudiences());
    sessions.add(session);
    session.start();
  });

  app.get('/healthz', async () => ({ status: 'ok', node: ctx.nodeId, sessions: sessions.byId.size }));
  app.get('/version', async () => ({ name: 'burrow-relay', version: RELAY_VERSION, protocol: PROTOCOL_VERSION }));
  app.get('/', async (_req, reply) => {
    reply.type('text/plain; charset=utf-8');
    const served = [tunnelUrl(publicUrl(), '<label>'), ...(config.pathRouting ? [tunnelUrl(publicUrl(), '<label>', 'path')] : [])].join(' and ');
    return `burrow relay ${RELAY_VERSION}\nTunnels are served at ${served}\nAgents connect with: burrow http <port> --relay ${publicUrl()}\n`;
  });
  app.setNotFoundHandler((req, reply) => {
    const e = renderError(
      'BURROW_ERR_NOT_FOUND',
      `no relay route ${req.method} ${req.url}; tunnels are at <label>.${config.domain}${config.pathRouting ? ` and ${config.basePath}/t/<label>/` : ''}`,
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
  let drained: Promise<void> | undefined;
  let admin: AdminServer | undefined;
  const relay: Relay = {
    app,
    config,
    nodeId: ctx.nodeId,
    publicUrl,
    async listen() {
      // Admin first: /readyz says "not-listening" until the public port is up. Fails with AdminListenError.
      if (config.adminListen !== 'off' && admin === undefined) {
        admin = await startAdminServer({
          listen: config.adminListen,
          nodeId: ctx.nodeId,
          metrics,
          readiness: () => ({ listening: app.server.listening, busUp: bus.isUp(), draining, closing: closing !== undefined }),
          logger: app.log.child({ component: 'admin' }),
          ...(config.adminToken !== undefined ? { admin: { token: config.adminToken, store: tenantStore, tunnels: ctx.tenancy } } : {}),
        });
      }
      try {
        await app.listen({ port: config.port, host: config.host });
      } catch (err) {
        await admin?.close();
        admin = undefined;
        throw err;
      }
      boundPort = (app.server.address() as AddressInfo).port;
      await tcp.listen();
      return publicUrl();
    },
    adminUrl: () => admin?.url,
    stats() {
      let agentStreams = 0;
      let active = 0;
      for (const s of sessions.byId.values()) {
        agentStreams += s.streamCount;
        if (s.isActive) active++;
      }
      return { sessions: sessions.byId.size, activeSessions: active, ingressStreams: ingress.size, agentStreams };
    },
    isDraining: () => draining,
    drain() {
      if (!draining) {
        draining = true;
        app.log.info({ sessions: sessions.byId.size, streams: ingress.size }, 'draining: agents asked to move, in-flight requests finishing');
        for (const s of sessions.byId.values()) s.goAway();
      }
      drained ??= waitDrained(ctx, config.drainTimeoutMs);
      return drained;
    },
    close() {
      closing ??= (async () => {
        draining = true;
        clearInterval(tick);
        leases.stop();
        peers.stop();
        ctx.tenancy.stop();
        // Visitors first, so they learn the relay is going (503) rather than that the agent went.
        ingress.abortAll('BURROW_ERR_RELAY_SHUTTING_DOWN', 'relay is shutting down');
        await tcp.close();
        for (const s of [...sessions.byId.values()]) s.close('BURROW_ERR_RELAY_SHUTTING_DOWN', 'relay is shutting down; reconnect');
        app.server.closeAllConnections?.();
        await app.close();
        await bus.close();
        if (ownStore) await tenantStore.close();
        // Last, so /readyz answers 503 "closing" while the rest shuts down.
        await admin?.close();
      })();
      return closing;
    },
  };
  return relay;
}

/**
 * Resolves once nothing is in flight: every session gone (its agent moved to another node) and
 * no public stream open, or all idle for a quiet moment (a lone node: its agents have nowhere
 * to go), or at the deadline.
 */
function waitDrained(ctx: RelayContext, timeoutMs: number): Promise<void> {
  const quietMs = Math.min(1000, timeoutMs);
  const started = Date.now();
  let idleSince: number | undefined;
  return new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      const now = Date.now();
      let streams = ctx.ingress.size;
      for (const s of ctx.sessions.byId.values()) streams += s.streamCount;
      idleSince = streams === 0 ? (idleSince ?? now) : undefined;
      const done = (ctx.sessions.byId.size === 0 && streams === 0) || (idleSince !== undefined && now - idleSince >= quietMs) || now - started >= timeoutMs;
      if (!done) return;
      clearInterval(poll);
      if (streams > 0) ctx.log.warn({ streams }, `drain deadline of ${timeoutMs} ms reached; cutting what is left`);
      resolve();
    }, 25);
  });
}

const RESET_AGENT_GONE = encodeReason('BURROW_ERR_AGENT_DISCONNECTED', 'the agent disconnected before the response completed');
const RESET_SESSION_GONE = encodeReason('BURROW_ERR_SESSION_GONE', 'the tunnel session is no longer on this relay node');
