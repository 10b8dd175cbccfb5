/**
 * One agent's WebSocket on the node that holds it: greeting and signed registration, then a
 * translator between bus messages (keyed by ingress node and stream) and agent-wire stream ids.
 * Credit windows are end to end (ingress ↔ agent); this node only forwards, so it buffers nothing
 * beyond what the windows allow. Every stream it knows ends with an END both ways or a RESET.
 */
import { randomBytes } from 'node:crypto';
import type { BusMessage, Holder } from '@burrow/bus';
import { FrameBatcher, MAX_BATCH_BYTES, sendVectored } from '@burrow/mux';
import {
  BurrowError,
  decodeFrames,
  decodeReason,
  decodeRegister,
  ERRORS,
  type ErrorCode,
  encodeJson,
  encodeReason,
  FLAG_FIN,
  type Frame,
  FrameType,
  type HelloPayload,
  MAX_STREAM_ID,
  PROTOCOL_VERSION,
  type RegisteredPayload,
  StreamKind,
  shareLabel,
  type VerifiedRegistration,
  verifyRegistration,
} from '@burrow/protocol';
import type { FastifyBaseLogger } from 'fastify';
import { nanoid } from 'nanoid';
import type { WebSocket } from 'ws';
import type { RelayContext } from './relayContext';
import { tunnelUrl } from './relayContext';
import { ConnectorStreams } from './shareSplice';
import type { Tenant } from './tenancy/types';

/** Where frames of one agent-wire stream go back to, and which halves have ended. */
interface Route {
  readonly node: string;
  readonly ingressId: number;
  fromIngressDone: boolean;
  fromAgentDone: boolean;
  /** A public TCP connection (counted against --tcp-max-connections). */
  readonly tcp: boolean;
}

type State = 'greeting' | 'registering' | 'active' | 'closed';

/**
 * Most bytes queued toward an agent's socket before the relay stops reading frames from it that
 * it must answer (PING, a connector's OPEN). Without it an agent that sends and never reads makes
 * the relay queue PONGs and RESETs without bound (measured: 94 MB of PONGs from a 2 s flood).
 * Stream data toward the agent is bounded by credit windows and never trips this by itself.
 */
const MAX_AGENT_BACKLOG_BYTES = 1024 * 1024;

export class AgentSession {
  readonly id = nanoid();
  labels: string[] = [];
  keyId = '';
  lastReceivedMs: number;
  lastSentMs: number;
  private state: State = 'greeting';
  private nonce: string | undefined = randomBytes(24).toString('base64url');
  private readonly batcher: FrameBatcher;
  private readonly routes = new Map<number, Route>();
  private readonly byIngress = new Map<string, Map<number, number>>();
  private nextStreamId = 1;
  private registrationTimer: NodeJS.Timeout | undefined;
  private holderRef: Holder | undefined;
  /** When the outstanding ping was sent, if one is. */
  private pingSentMs: number | undefined;
  /** The agent said it is leaving (GOAWAY/ERROR): release its labels without a reconnect grace. */
  private agentLeaving = false;
  /** Replaced while streams were in flight: closes with this code once they end (or at the drain deadline). */
  private retiring: { code: ErrorCode; timer: NodeJS.Timeout } | undefined;
  /** GOAWAY sent because this node drains. */
  private drainNotified = false;
  /** Token auth: the tenant this session acts for, and the token it registered with. */
  tenant: Tenant | undefined;
  tokenId: string | undefined;
  /** When registration completed (0 before). */
  connectedAt = 0;
  /** Requests opened on this session, and body bytes each way (for the admin listing). */
  requests = 0;
  bytesIn = 0;
  bytesOut = 0;
  private everActive = false;
  private readonly log: FastifyBaseLogger;
  /** The public TCP port of this session's label, when the agent asked for one. */
  tcpPort: number | undefined;
  /** TCP connections routed now. */
  private tcpStreams = 0;
  /** A connecting agent (`burrow connect`): the streams it opened, spliced to shares. */
  private connector: ConnectorStreams | undefined;
  /** A sharing agent (`burrow share tcp`): its share's name. */
  shareName: string | undefined;
  /** Reading from the agent is paused until it reads what it provoked (see MAX_AGENT_BACKLOG_BYTES). */
  private readPaused = false;

  /** What this session serves, for listings. */
  get kind(): 'http' | 'tcp' | 'share' | 'connect' {
    if (this.connector !== undefined) return 'connect';
    if (this.shareName !== undefined) return 'share';
    return this.tcpPort !== undefined ? 'tcp' : 'http';
  }

  constructor(
    private readonly ctx: RelayContext,
    private readonly ws: WebSocket,
    readonly remoteAddress: string,
    /** host:port of the agent's connection (for share connection logs). */
    private readonly peer: string,
    /** Authorities this connection may have been addressed to (public URL, Host header). */
    private readonly audiences: readonly string[],
  ) {
    this.log = ctx.log.child({ session: this.id, remote: remoteAddress });
    this.lastReceivedMs = this.lastSentMs = Date.now();
    this.batcher = new FrameBatcher(
      (batch) => {
        this.lastSentMs = Date.now();
        this.ws.send(batch, { binary: true }, this.onSent);
      },
      setImmediate,
      MAX_BATCH_BYTES,
      (parts, bytes) => {
        if (!sendVectored(this.ws, parts, bytes, this.onSent)) return false;
        this.lastSentMs = Date.now();
        return true;
      },
    );
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('close', (code) => this.onSocketClosed(code));
    ws.on('error', (err) => this.log.debug({ err }, 'agent socket error'));
  }

  /** A batch reached the socket: reading resumes once the agent has taken most of its backlog. */
  private readonly onSent = (): void => {
    if (this.readPaused && this.state !== 'closed' && this.ws.bufferedAmount <= MAX_AGENT_BACKLOG_BYTES / 2) {
      this.readPaused = false;
      this.ws.resume();
    }
  };

  /**
   * The agent sent a frame the relay must answer. If it is not reading what it was already sent,
   * stop reading from it until it does: what it can make the relay queue stays bounded (the rest of
   * the current message, at most), and a peer that never reads meets the heartbeat timeout.
   */
  private throttleAnswers(): void {
    if (this.readPaused || this.ws.bufferedAmount <= MAX_AGENT_BACKLOG_BYTES) return;
    this.readPaused = true;
    this.ws.pause();
    this.log.debug({ backlog: this.ws.bufferedAmount }, 'agent is not reading its answers; reading from it paused');
  }

  get streamCount(): number {
    return this.routes.size + (this.connector?.size ?? 0);
  }

  get isActive(): boolean {
    return this.state === 'active';
  }

  /** Where this session lives, for the registry and for requests on this node (set at registration). */
  holder(): Holder {
    this.holderRef ??= { nodeId: this.ctx.nodeId, sessionId: this.id, keyId: this.keyId };
    return this.holderRef;
  }

  start(): void {
    const { config } = this.ctx;
    const hello: HelloPayload = {
      v: PROTOCOL_VERSION,
      nonce: this.nonce as string,
      relay: this.ctx.publicUrl(),
      windowBytes: config.streamWindowBytes,
      maxBodyBytes: config.maxBodyBytes,
      pingIntervalMs: config.pingIntervalMs,
    };
    this.batcher.sendFrame(FrameType.HELLO, 0, 0, encodeJson(hello));
    this.registrationTimer = setTimeout(() => {
      this.fail(new BurrowError('BURROW_ERR_REGISTRATION_TIMEOUT', `no registration within ${config.registrationTimeoutMs} ms`));
    }, config.registrationTimeoutMs);
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state === 'closed') return;
    this.lastReceivedMs = Date.now();
    try {
      if (!isBinary) throw new BurrowError('BURROW_ERR_PROTOCOL', 'text message on the agent socket; frames are binary');
      decodeFrames(data, 'agentToRelay', this.onFrame);
    } catch (err) {
      this.fail(err);
    }
  }

  private readonly onFrame = (frame: Frame): void => {
    if (this.state === 'closed') return;
    if (this.state !== 'active') {
      if (frame.type === FrameType.ERROR || frame.type === FrameType.GOAWAY) {
        const r = decodeReason(frame.payload);
        this.log.info({ code: r.code }, `agent gave up before registering: ${r.message}`);
        this.agentLeaving = true;
        this.close(r.code, r.message, false);
        return;
      }
      if (this.state === 'greeting' && frame.type === FrameType.REGISTER) {
        this.state = 'registering';
        void this.register(frame.payload);
        return;
      }
      throw new BurrowError('BURROW_ERR_PROTOCOL', `frame type 0x${frame.type.toString(16)} before registration completed`);
    }
    switch (frame.type) {
      case FrameType.PING:
        this.throttleAnswers();
        this.batcher.sendFrame(FrameType.PONG, 0, 0, Buffer.from(frame.payload));
        return;
      case FrameType.PONG:
        return;
      case FrameType.GOAWAY: {
        const r = decodeReason(frame.payload);
        this.log.info({ code: r.code }, `agent leaving: ${r.message}`);
        this.agentLeaving = true;
        this.close('BURROW_ERR_AGENT_SHUTDOWN', r.message, false);
        return;
      }
      case FrameType.ERROR: {
        const r = decodeReason(frame.payload);
        this.log.warn({ code: r.code }, `agent reported an error: ${r.message}`);
        this.agentLeaving = true;
        this.close(r.code, r.message, false);
        return;
      }
      case FrameType.REGISTER:
        throw new BurrowError('BURROW_ERR_PROTOCOL', 'second registration on one session');
      default:
        this.fromAgent(frame);
    }
  };

  private async register(payload: Buffer): Promise<void> {
    const { bus } = this.ctx;
    let verified: VerifiedRegistration;
    let reconnect = false;
    try {
      const nonce = this.nonce;
      this.nonce = undefined; // one attempt per issued nonce
      verified = verifyRegistration(decodeRegister(payload), { expectedNonce: nonce, audiences: this.audiences, nowMs: Date.now() });
      this.keyId = verified.keyId;
      if (verified.tcp === true && this.ctx.config.tcpPorts === undefined) {
        throw new BurrowError(
          'BURROW_ERR_TCP_DISABLED',
          'this relay offers no public TCP ports (it runs without --tcp-ports); use burrow http, or another relay',
        );
      }
      const admission = await this.ctx.tenancy.admit(verified, this.id);
      this.tenant = admission.tenant;
      this.tokenId = admission.tokenId;
      const share = verified.share;
      const policy =
        share === undefined ? admission.policy : { ...admission.policy, share: share.secretSha256 !== undefined ? { secretSha256: share.secretSha256 } : {} };
      this.holderRef = {
        nodeId: this.ctx.nodeId,
        sessionId: this.id,
        keyId: this.keyId,
        ...(policy !== undefined ? { policy } : {}),
      };
      if (this.isClosed()) return;
      // A share claims its name only (never the key's HTTP label); a connector claims nothing.
      const labels = share !== undefined ? [shareLabel(share.name)] : verified.connect === true ? [] : [verified.label];
      if (share !== undefined) {
        const name = shareLabel(share.name);
        const owner = await bus.registry.bindName(name, verified.keyId);
        if (owner !== verified.keyId) {
          throw new BurrowError('BURROW_ERR_NAME_TAKEN', `share name "${share.name}" belongs to another key; choose another --name or use that key`);
        }
        this.shareName = share.name;
      }
      if (verified.connect === true) {
        this.connector = new ConnectorStreams(
          this.ctx,
          {
            id: this.id,
            tenant: this.tenant,
            peer: this.peer,
            sendFrame: (type, flags, id, payload) => this.batcher.sendFrame(type, flags, id, payload),
          },
          this.log,
        );
      }
      if (verified.subdomain !== undefined) {
        const owner = await bus.registry.bindName(verified.subdomain, verified.keyId);
        if (owner !== verified.keyId) {
          throw new BurrowError('BURROW_ERR_NAME_TAKEN', `subdomain "${verified.subdomain}" belongs to another key; choose another name or use that key`);
        }
        labels.push(verified.subdomain);
      }
      if (this.isClosed()) return;
      this.labels = labels;
      for (const label of labels) {
        const previous = await bus.registry.claim(label, this.holder());
        if (this.isClosed()) {
          await bus.registry.release(label, this.id);
          return;
        }
        this.ctx.sessions.bindLabel(label, this);
        if (previous !== undefined) {
          reconnect = true;
          this.replace(previous);
        }
      }
      const range = this.ctx.config.tcpPorts;
      if (verified.tcp === true && range !== undefined) {
        const port = await bus.registry.allocatePort(verified.label, this.id, range);
        if (port === undefined) {
          throw new BurrowError('BURROW_ERR_TCP_PORTS_EXHAUSTED', `every TCP port of ${range.first}-${range.last} is held by another tunnel; retrying`);
        }
        this.tcpPort = port;
        if (this.isClosed()) return;
      }
    } catch (err) {
      if (err instanceof BurrowError && err.code === 'BURROW_ERR_WRONG_AUDIENCE') {
        // The usual cause is an agent dialling this relay by another name (an IP, a container name).
        this.fail(
          new BurrowError(err.code, `${err.message}; connect with --relay ${this.ctx.publicUrl()}, or ask the operator to add that name to --extra-audiences`),
        );
        return;
      }
      this.fail(err);
      return;
    }
    clearTimeout(this.registrationTimer);
    this.state = 'active';
    this.everActive = true;
    this.connectedAt = Date.now();
    this.ctx.tenancy.sessionOpened(this);
    const publicUrl = this.ctx.publicUrl();
    const registered: RegisteredPayload = {
      label: this.shareName !== undefined ? shareLabel(this.shareName) : verified.label,
      // Shares and connectors have no public URL.
      url: this.shareName !== undefined || this.connector !== undefined ? '' : tunnelUrl(publicUrl, verified.label, this.ctx.config.tunnelUrls),
      sessionId: this.id,
      ...(this.shareName !== undefined ? { share: this.shareName } : {}),
      ...(verified.subdomain !== undefined ? { subdomainUrl: tunnelUrl(publicUrl, verified.subdomain, this.ctx.config.tunnelUrls) } : {}),
    };
    const registeredTcp: RegisteredPayload =
      this.tcpPort === undefined ? registered : { ...registered, tcpUrl: `tcp://${this.ctx.config.tcpHost ?? new URL(publicUrl).hostname}:${this.tcpPort}` };
    this.batcher.sendFrame(FrameType.REGISTERED, 0, 0, encodeJson(registeredTcp));
    this.log.info(
      {
        labels: this.labels,
        key: this.keyId,
        ...(this.tcpPort !== undefined ? { tcpPort: this.tcpPort } : {}),
        ...(this.connector !== undefined ? { connector: true } : {}),
      },
      'agent registered',
    );
    this.ctx.metrics.agentRegistered(reconnect);
    // Registered while the node began draining: send it on its way at once.
    if (this.ctx.isDraining()) this.goAway();
  }

  /** This node drains: ask the agent to connect elsewhere; streams in flight carry on meanwhile. */
  goAway(): void {
    if (this.state !== 'active' || this.drainNotified) return;
    this.drainNotified = true;
    this.batcher.sendFrame(FrameType.GOAWAY, 0, 0, encodeReason('BURROW_ERR_RELAY_SHUTTING_DOWN', 'this relay node is draining; reconnect to another node'));
  }

  /**
   * Another session holds this one's labels now. Streams in flight finish first (a drained
   * agent's old connection carries them); new requests already go to the new holder.
   */
  retire(code: ErrorCode, message: string): void {
    if (this.state === 'closed' || this.retiring !== undefined) return;
    this.ctx.sessions.unbindLabels(this);
    if (this.routes.size === 0 || this.state !== 'active') {
      this.close(code, message);
      return;
    }
    this.log.info({ streams: this.routes.size }, 'session replaced; closing once its streams end');
    const timer = setTimeout(() => this.close(code, message), this.ctx.config.drainTimeoutMs);
    timer.unref();
    this.retiring = { code, timer };
  }

  /**
   * The agent streams of requests that entered on `nodes` can never finish: reset them, and tell
   * those nodes (now, or once the bus is back) in case they are still there.
   */
  dropIngressNodes(nodes: ReadonlySet<string>, code: ErrorCode, message: string): void {
    for (const [id, route] of [...this.routes]) {
      if (!nodes.has(route.node)) continue;
      this.batcher.sendFrame(FrameType.RESET, 0, id, encodeReason(code, message));
      this.unroute(id, route);
      this.replyReset(route.node, route.ingressId, code, message);
    }
  }

  /** Nodes where requests carried by this session entered. */
  ingressNodes(): IterableIterator<string> {
    return this.byIngress.keys();
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  /** A newer session took a label this older one held. */
  private replace(previous: Holder): void {
    if (previous.nodeId === this.ctx.nodeId) {
      this.ctx.sessions.byId.get(previous.sessionId)?.retire('BURROW_ERR_SESSION_REPLACED', 'a newer session of this tunnel connected');
    } else {
      this.ctx.bus.publish(previous.nodeId, { kind: 'sessionReplaced', sessionId: previous.sessionId });
    }
  }

  /** A frame from an ingress node for this session. */
  fromIngress(msg: Extract<BusMessage, { kind: 'toSession' }>): void {
    const { frame, replyNode } = msg;
    if (this.state !== 'active') {
      if (frame.type === FrameType.OPEN) this.replyReset(replyNode, frame.streamId, 'BURROW_ERR_SESSION_GONE', 'the tunnel session here is not active');
      else if (frame.type !== FrameType.RESET) this.replyReset(replyNode, frame.streamId, 'BURROW_ERR_AGENT_DISCONNECTED', 'agent session is not active');
      return;
    }
    let perNode = this.byIngress.get(replyNode);
    if (frame.type === FrameType.OPEN) {
      if (this.routes.size >= this.ctx.config.maxStreamsPerTunnel) {
        this.replyReset(
          replyNode,
          frame.streamId,
          'BURROW_ERR_TOO_MANY_STREAMS',
          `this tunnel already has ${this.routes.size} requests in flight (limit ${this.ctx.config.maxStreamsPerTunnel})`,
        );
        return;
      }
      const id = this.nextStreamId;
      if (id > MAX_STREAM_ID - 2) {
        // Ids are never reused; a fresh session starts again at 1.
        this.replyReset(replyNode, frame.streamId, 'BURROW_ERR_AGENT_DISCONNECTED', 'agent session ran out of stream ids and is reconnecting');
        this.close('BURROW_ERR_PROTOCOL', 'stream ids exhausted; reconnect');
        return;
      }
      const tcp = frame.payload[0] === StreamKind.TCP;
      if (tcp && this.tcpStreams >= this.ctx.config.tcpMaxConnections) {
        const message = `this tunnel already carries ${this.tcpStreams} TCP connections (limit ${this.ctx.config.tcpMaxConnections})`;
        this.log.info({ code: 'BURROW_ERR_TCP_CONNECTION_LIMIT', port: this.tcpPort }, `tcp connection refused: ${message}`);
        this.replyReset(replyNode, frame.streamId, 'BURROW_ERR_TCP_CONNECTION_LIMIT', message);
        return;
      }
      this.nextStreamId += 2;
      const maxStreams = this.tenant?.quotas.maxStreams;
      if (maxStreams !== undefined && (this.ctx.tenantStreams.get(this.tenant?.id as string) ?? 0) >= maxStreams) {
        this.nextStreamId -= 2;
        this.replyReset(replyNode, frame.streamId, 'BURROW_ERR_QUOTA_STREAMS', `tenant "${this.tenant?.id}" already has ${maxStreams} requests in flight here`);
        return;
      }
      const route: Route = { node: replyNode, ingressId: frame.streamId, fromIngressDone: (frame.flags & FLAG_FIN) !== 0, fromAgentDone: false, tcp };
      this.routes.set(id, route);
      if (tcp) this.tcpStreams++;
      this.countStream(1);
      this.requests++;
      if (perNode === undefined) {
        perNode = new Map();
        this.byIngress.set(replyNode, perNode);
      }
      perNode.set(frame.streamId, id);
      this.batcher.sendFrame(frame.type, frame.flags, id, frame.payload);
      return;
    }
    const id = perNode?.get(frame.streamId);
    if (id === undefined) return; // the stream already ended here
    const route = this.routes.get(id) as Route;
    if (frame.type === FrameType.DATA) this.bytesIn += frame.payload.length;
    this.batcher.sendFrame(frame.type, frame.flags, id, frame.payload);
    if (frame.type === FrameType.RESET) this.unroute(id, route);
    else if (frame.type === FrameType.END || (frame.type === FrameType.DATA && (frame.flags & FLAG_FIN) !== 0)) {
      route.fromIngressDone = true;
      if (route.fromAgentDone) this.unroute(id, route);
    }
  }

  private fromAgent(frame: Frame): void {
    if (frame.streamId % 2 === 0) {
      // Agent-opened streams: only a connecting agent opens any.
      if (this.connector === undefined) {
        throw new BurrowError('BURROW_ERR_PROTOCOL', `frame for stream ${frame.streamId}: only an agent registered with "connect" opens streams`);
      }
      // Every OPEN is answered (a RESET when refused): a flood of them is a flood of answers.
      if (frame.type === FrameType.OPEN) this.throttleAnswers();
      this.connector.fromAgent(frame);
      return;
    }
    if (frame.type === FrameType.OPEN) throw new BurrowError('BURROW_ERR_PROTOCOL', `OPEN on stream ${frame.streamId}, an id the relay allocates`);
    const route = this.routes.get(frame.streamId);
    if (route === undefined) {
      if (frame.streamId % 2 === 1 && frame.streamId < this.nextStreamId) return; // late frame for an ended stream
      throw new BurrowError('BURROW_ERR_PROTOCOL', `frame for stream ${frame.streamId}, which this relay never opened`);
    }
    if (route.fromAgentDone && frame.type !== FrameType.CREDIT && frame.type !== FrameType.RESET) {
      throw new BurrowError('BURROW_ERR_PROTOCOL', `frame type 0x${frame.type.toString(16)} on stream ${frame.streamId} after its end`);
    }
    if (frame.type === FrameType.DATA) this.bytesOut += frame.payload.length;
    // The payload is a view into the WebSocket message, which nobody reuses: pass it on as is.
    this.ctx.bus.publish(route.node, { kind: 'toIngress', frame: { type: frame.type, flags: frame.flags, streamId: route.ingressId, payload: frame.payload } });
    if (frame.type === FrameType.RESET) this.unroute(frame.streamId, route);
    else if (frame.type === FrameType.END || ((frame.type === FrameType.DATA || frame.type === FrameType.RESPONSE) && (frame.flags & FLAG_FIN) !== 0)) {
      route.fromAgentDone = true;
      if (route.fromIngressDone) this.unroute(frame.streamId, route);
    }
  }

  /** Streams in flight per tenant on this node (the maxStreams quota). */
  private countStream(delta: number): void {
    const t = this.tenant;
    if (t === undefined || t.quotas.maxStreams === undefined) return;
    const n = (this.ctx.tenantStreams.get(t.id) ?? 0) + delta;
    if (n <= 0) this.ctx.tenantStreams.delete(t.id);
    else this.ctx.tenantStreams.set(t.id, n);
  }

  private unroute(id: number, route: Route): void {
    if (this.routes.delete(id)) {
      this.countStream(-1);
      if (route.tcp) this.tcpStreams--;
    }
    const perNode = this.byIngress.get(route.node);
    perNode?.delete(route.ingressId);
    if (perNode !== undefined && perNode.size === 0) this.byIngress.delete(route.node);
    if (this.retiring !== undefined && this.routes.size === 0) {
      const { code } = this.retiring;
      queueMicrotask(() => this.close(code, ERRORS[code].title));
    }
  }

  private replyReset(node: string, ingressId: number, code: ErrorCode, message: string): void {
    // Through peerResets: a RESET that cannot go out while the bus is down goes once it is back.
    this.ctx.peerResets.send(node, {
      kind: 'toIngress',
      frame: { type: FrameType.RESET, flags: 0, streamId: ingressId, payload: encodeReason(code, message) },
    });
  }

  /**
   * Liveness, called on a short interval. Pings after a ping interval of silence either way;
   * declares the agent dead only when a ping has gone unanswered for a further interval, so a
   * stalled event loop here never condemns an agent that had no chance to answer.
   */
  tick(nowMs: number): void {
    if (this.state !== 'active') return;
    const { pingIntervalMs } = this.ctx.config;
    if (this.pingSentMs !== undefined) {
      if (this.lastReceivedMs >= this.pingSentMs) this.pingSentMs = undefined;
      else if (nowMs - this.pingSentMs >= pingIntervalMs) {
        const message = `no frame from the agent for ${nowMs - this.lastReceivedMs} ms`;
        this.log.warn({ code: 'BURROW_ERR_HEARTBEAT_TIMEOUT' }, `closing agent session: ${message}`);
        this.close('BURROW_ERR_HEARTBEAT_TIMEOUT', message);
        return;
      }
    }
    if (this.pingSentMs === undefined && (nowMs - this.lastSentMs >= pingIntervalMs || nowMs - this.lastReceivedMs >= pingIntervalMs)) {
      this.pingSentMs = nowMs;
      const stamp = Buffer.allocUnsafe(8);
      stamp.writeDoubleBE(nowMs, 0);
      this.batcher.sendFrame(FrameType.PING, 0, 0, stamp);
    }
  }

  private fail(err: unknown): void {
    const e = err instanceof BurrowError ? err : new BurrowError('BURROW_ERR_INTERNAL', String(err));
    if (e.code === 'BURROW_ERR_INTERNAL') this.log.error({ err }, 'agent session failed');
    else this.log.warn({ code: e.code }, `closing agent session: ${e.message}`);
    this.close(e.code, e.message);
  }

  /**
   * Ends the session: tells the agent why (unless it told us), answers every stream in flight
   * at once, releases labels. Idempotent.
   */
  close(code: ErrorCode, message: string = ERRORS[code].title, notifyAgent = true): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.registrationTimer);
    clearTimeout(this.retiring?.timer);
    if (notifyAgent) {
      const type = code === 'BURROW_ERR_RELAY_SHUTTING_DOWN' ? FrameType.GOAWAY : FrameType.ERROR;
      this.batcher.sendFrame(type, 0, 0, encodeReason(code, message));
    }
    this.batcher.close();
    this.ws.close(ERRORS[code].close, code);
    // Read again, so that the agent's close frame is seen and the socket goes now, not at ws's close timeout.
    if (this.readPaused) this.ws.resume();
    // A peer that stopped answering pings will not answer the close handshake either: let its socket
    // go now (the agent, if still there, learns at once) rather than after ws's 30 s close timeout.
    if (code === 'BURROW_ERR_HEARTBEAT_TIMEOUT') this.ws.terminate();
    this.ctx.metrics.agentDisconnected(code);
    this.cleanup(code);
  }

  private onSocketClosed(closeCode: number): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.registrationTimer);
    clearTimeout(this.retiring?.timer);
    this.batcher.close();
    this.log.info({ closeCode }, 'agent disconnected');
    this.ctx.metrics.agentDisconnected('BURROW_ERR_AGENT_DISCONNECTED');
    this.cleanup('BURROW_ERR_AGENT_DISCONNECTED');
  }

  private cleanup(reason: string): void {
    this.ctx.tenancy.sessionClosed(this, reason, this.everActive);
    this.connector?.closeAll('BURROW_ERR_AGENT_DISCONNECTED', 'the connecting agent disconnected');
    this.countStream(-this.routes.size);
    for (const route of this.routes.values()) {
      this.replyReset(route.node, route.ingressId, 'BURROW_ERR_AGENT_DISCONNECTED', 'the agent disconnected before the response completed');
    }
    this.routes.clear();
    this.tcpStreams = 0;
    this.byIngress.clear();
    this.ctx.sessions.remove(this);
    if (this.tcpPort !== undefined) {
      // A dropped agent keeps its port a lease period, so its label still resolves while it reconnects.
      const keepMs = this.agentLeaving ? 0 : this.ctx.bus.leaseTtlMs;
      this.ctx.bus.registry
        .releasePort(this.tcpPort, this.id, keepMs)
        .catch((err: unknown) => this.log.warn({ err, port: this.tcpPort }, 'could not release TCP port'));
    }
    // An agent that dropped (rather than left) is expected back: visitors wait for it a while.
    const graceMs = this.agentLeaving ? 0 : this.ctx.config.reconnectGraceMs;
    for (const label of this.labels) {
      this.ctx.bus.registry.release(label, this.id, graceMs).catch((err: unknown) => this.log.warn({ err, label }, 'could not release label'));
    }
  }
}
