/**
 * Private TCP shares, relay side: the streams a connecting agent (`burrow connect`, the `connect`
 * claim) opens on its session. Each OPEN carries a connect request (share name, proof, target).
 * The relay finds the share (`share:<name>`: this node's sessions first, then the registry),
 * checks the proof against the share's lease policy (the secret's SHA-256 in constant time, or
 * the same tenant), then opens a stream of kind TCP to the sharing agent, wherever it is, over
 * the bus like any ingress stream, and splices the two: frames pass unchanged both ways with only
 * their ids translated, so credit runs end to end between the two agents and nothing is buffered
 * here beyond what the windows allow. A refusal is a RESET on the connector's stream, logged.
 */
import { timingSafeEqual } from 'node:crypto';
import type { BusFrame, Holder } from '@burrow/bus';
import {
  BurrowError,
  type ConnectRequest,
  decodeConnectRequest,
  decodeReason,
  type ErrorCode,
  encodeReason,
  encodeRequestHead,
  FLAG_FIN,
  type Frame,
  FrameType,
  type Reason,
  StreamKind,
  shareLabel,
  shareSecretDigest,
} from '@burrow/protocol';
import type { FastifyBaseLogger } from 'fastify';
import type { RawPeer } from './ingressTable';
import type { RelayContext } from './relayContext';
import { resolveLocal, resolveRemote } from './resolveTunnel';
import type { Tenant } from './tenancy/types';

/** The OPEN header that names the share target a connector asked for (absent: the main target). */
export const SHARE_TARGET_HEADER = 'burrow-target';
/** Frames a connector may send before its splice is up: one window of data and a little slack. */
const PENDING_SLACK_BYTES = 64 * 1024;

/** What the splicer needs of the connector's session. */
export interface ConnectorSession {
  readonly id: string;
  readonly tenant: Tenant | undefined;
  /** host:port of the connecting agent, as this relay sees it. */
  readonly peer: string;
  /** Writes a frame to the connecting agent's WebSocket. */
  sendFrame(type: FrameType, flags: number, streamId: number, payload?: Buffer): void;
}

interface Splice {
  readonly wireId: number;
  readonly started: number;
  share: string;
  target: string | undefined;
  holder: Holder | undefined;
  /** This node's ingress id toward the sharing agent, once opened. */
  ingressId: number | undefined;
  /** Frames from the connector before the splice is up. */
  pending: Frame[] | undefined;
  pendingBytes: number;
  fromConnectorDone: boolean;
  fromSharerDone: boolean;
  /** The sharing agent answered (RESPONSE): the target is connected. */
  connected: boolean;
  bytesUp: number;
  bytesDown: number;
  lastActivityMs: number;
  idleTimer: NodeJS.Timeout | undefined;
  done: boolean;
}

const EMPTY = Buffer.alloc(0);

export class ConnectorStreams {
  private readonly splices = new Map<number, Splice>();
  private highestId = 0;
  private readonly log: FastifyBaseLogger;
  /** Refusal lines logged in the current window, and those left out: a flood of OPENs must not flood the log. */
  private refusalWindowMs = 0;
  private refusalsLogged = 0;
  private refusalsSkipped = 0;

  constructor(
    private readonly ctx: RelayContext,
    private readonly session: ConnectorSession,
    log: FastifyBaseLogger,
  ) {
    this.log = log;
  }

  get size(): number {
    return this.splices.size;
  }

  /** A frame from the connecting agent on a stream it opened (even id). Throws for session-level violations. */
  fromAgent(frame: Frame): void {
    const id = frame.streamId;
    if (frame.type === FrameType.OPEN) {
      if (id <= this.highestId) throw new BurrowError('BURROW_ERR_PROTOCOL', `stream id ${id} reused`);
      this.highestId = id;
      this.open(frame);
      return;
    }
    const s = this.splices.get(id);
    if (s === undefined) {
      if (id <= this.highestId) return; // a late frame for a stream that ended here
      throw new BurrowError('BURROW_ERR_PROTOCOL', `frame for stream ${id}, which the agent never opened`);
    }
    if (frame.type === FrameType.RESPONSE) throw new BurrowError('BURROW_ERR_PROTOCOL', `RESPONSE on stream ${id}, which the agent opened`);
    if (s.fromConnectorDone && frame.type !== FrameType.CREDIT && frame.type !== FrameType.RESET) {
      throw new BurrowError('BURROW_ERR_PROTOCOL', `frame type 0x${frame.type.toString(16)} on stream ${id} after its end`);
    }
    if (frame.type === FrameType.DATA) {
      s.bytesUp += frame.payload.length;
      s.lastActivityMs = Date.now();
    }
    const ends = frame.type === FrameType.END || (frame.type === FrameType.DATA && (frame.flags & FLAG_FIN) !== 0);
    if (s.pending !== undefined) {
      if (frame.type === FrameType.RESET) {
        this.finish(s, decodeReason(frame.payload), 'connector');
        return;
      }
      s.pending.push(frame);
      s.pendingBytes += frame.payload.length;
      if (ends) s.fromConnectorDone = true;
      if (s.pendingBytes > this.ctx.config.streamWindowBytes + PENDING_SLACK_BYTES) {
        this.refuse(s, 'BURROW_ERR_FLOW_CONTROL', `the agent sent ${s.pendingBytes} bytes before the share answered, more than its window`);
      }
      return;
    }
    this.toSharer(s, frame.type, frame.flags, frame.payload);
    if (frame.type === FrameType.RESET) {
      this.finish(s, decodeReason(frame.payload), 'connector');
      return;
    }
    if (ends) {
      s.fromConnectorDone = true;
      if (s.fromSharerDone) this.finish(s, undefined);
    }
  }

  /** The connector's session ended: every share connection of it ends too. */
  closeAll(code: ErrorCode, message: string): void {
    for (const s of [...this.splices.values()]) {
      if (s.ingressId !== undefined) this.toSharer(s, FrameType.RESET, 0, encodeReason('BURROW_ERR_CANCELLED', message));
      this.finish(s, { code, message }, 'connector');
    }
  }

  private open(frame: Frame): void {
    const s: Splice = {
      wireId: frame.streamId,
      started: Date.now(),
      share: '',
      target: undefined,
      holder: undefined,
      ingressId: undefined,
      pending: [],
      pendingBytes: 0,
      fromConnectorDone: (frame.flags & FLAG_FIN) !== 0,
      fromSharerDone: false,
      connected: false,
      bytesUp: 0,
      bytesDown: 0,
      lastActivityMs: Date.now(),
      idleTimer: undefined,
      done: false,
    };
    this.splices.set(s.wireId, s);
    let req: ConnectRequest;
    try {
      req = decodeConnectRequest(frame.payload);
    } catch (err) {
      const e = err instanceof BurrowError ? err : new BurrowError('BURROW_ERR_BAD_REQUEST', String(err));
      this.refuse(s, 'BURROW_ERR_BAD_REQUEST', `bad connect request: ${e.message}`);
      return;
    }
    s.share = req.share;
    s.target = req.target;
    const max = this.ctx.config.maxStreamsPerTunnel;
    if (this.splices.size > max) {
      this.refuse(s, 'BURROW_ERR_TOO_MANY_STREAMS', `this agent already has ${this.splices.size - 1} share connections open (limit ${max})`);
      return;
    }
    void this.establish(s, req).catch((err: unknown) => {
      this.log.error({ err, share: s.share }, 'share connection failed');
      this.refuse(s, 'BURROW_ERR_INTERNAL', 'the relay could not open this share connection');
    });
  }

  private async establish(s: Splice, req: ConnectRequest): Promise<void> {
    const label = shareLabel(req.share);
    let holder = resolveLocal(this.ctx, label);
    if (holder === undefined) {
      const r = await resolveRemote(this.ctx, label);
      if (s.done) return;
      if ('error' in r) {
        const message =
          r.error === 'BURROW_ERR_UNKNOWN_TUNNEL'
            ? `no share is named "${req.share}" on this relay`
            : r.error === 'BURROW_ERR_TUNNEL_OFFLINE'
              ? `share "${req.share}" is known but its agent is not connected`
              : r.message;
        this.refuse(s, r.error, message);
        return;
      }
      holder = r.holder;
    }
    const policy = holder.policy?.share;
    if (policy === undefined) {
      this.refuse(s, 'BURROW_ERR_UNKNOWN_TUNNEL', `no share is named "${req.share}" on this relay`);
      return;
    }
    const bySecret = req.secret !== undefined && policy.secretSha256 !== undefined && sameDigest(shareSecretDigest(req.secret), policy.secretSha256);
    const tenant = this.session.tenant?.id;
    const byTenant = tenant !== undefined && holder.policy?.tenant === tenant;
    if (!bySecret && !byTenant) {
      const message =
        req.secret !== undefined
          ? `the secret for share "${req.share}" is wrong`
          : `share "${req.share}" needs its secret (burrow connect --secret) or an agent of the same tenant`;
      this.refuse(s, 'BURROW_ERR_SHARE_DENIED', message);
      return;
    }
    s.holder = holder;
    const peer: RawPeer = {
      onFrame: (f) => this.fromSharer(s, f),
      onAbort: (reason) => {
        this.toConnector(s, FrameType.RESET, 0, encodeReason(reason.code, reason.message));
        this.finish(s, reason, 'relay');
      },
    };
    s.ingressId = this.ctx.ingress.openRaw(holder, peer);
    const head = encodeRequestHead({
      kind: StreamKind.TCP,
      method: '',
      target: this.session.peer,
      headers: req.target !== undefined ? [SHARE_TARGET_HEADER, req.target] : [],
    });
    const pending = s.pending ?? [];
    s.pending = undefined;
    const finNow = pending.length === 0 && s.fromConnectorDone;
    this.toSharer(s, FrameType.OPEN, finNow ? FLAG_FIN : 0, head);
    for (const f of pending) this.toSharer(s, f.type, f.flags, f.payload);
    this.armIdle(s);
  }

  /** A frame from the sharing agent (through its holder node), for the connector's stream. */
  private fromSharer(s: Splice, f: BusFrame): void {
    if (s.done) return;
    if (f.type === FrameType.DATA) {
      s.bytesDown += f.payload.length;
      s.lastActivityMs = Date.now();
    }
    this.toConnector(s, f.type, f.flags, f.payload);
    if (f.type === FrameType.RESPONSE) s.connected = true;
    if (f.type === FrameType.RESET) {
      this.finish(s, decodeReason(f.payload), 'share');
      return;
    }
    if (f.type === FrameType.END || ((f.type === FrameType.DATA || f.type === FrameType.RESPONSE) && (f.flags & FLAG_FIN) !== 0)) {
      s.fromSharerDone = true;
      if (s.fromConnectorDone) this.finish(s, undefined);
    }
  }

  private toSharer(s: Splice, type: FrameType, flags: number, payload: Buffer): void {
    const holder = s.holder;
    if (holder === undefined || s.ingressId === undefined) return;
    // Undelivered frames come back through the bus's undelivered handler (ingress.abortStream).
    this.ctx.bus.publish(holder.nodeId, {
      kind: 'toSession',
      sessionId: holder.sessionId,
      replyNode: this.ctx.nodeId,
      frame: { type, flags, streamId: s.ingressId, payload },
    });
  }

  private toConnector(s: Splice, type: FrameType, flags: number, payload: Buffer): void {
    this.session.sendFrame(type, flags, s.wireId, payload.length === 0 ? EMPTY : payload);
  }

  /** Ends a connection the share never saw (or that must stop now): RESET to the connector, a log line. */
  private refuse(s: Splice, code: ErrorCode, message: string): void {
    if (s.done) return;
    this.toConnector(s, FrameType.RESET, 0, encodeReason(code, message));
    if (s.ingressId !== undefined) this.toSharer(s, FrameType.RESET, 0, encodeReason(code, message));
    this.finish(s, { code, message }, 'relay');
  }

  /** No byte either way for --tcp-idle-timeout-ms: both sides get a RESET with TCP_IDLE. */
  private armIdle(s: Splice): void {
    const idleMs = this.ctx.config.tcpIdleTimeoutMs;
    if (idleMs <= 0 || s.done) return;
    const check = (): void => {
      if (s.done) return;
      const quietMs = Date.now() - s.lastActivityMs;
      if (quietMs < idleMs) {
        s.idleTimer = setTimeout(check, idleMs - quietMs);
        s.idleTimer.unref();
        return;
      }
      this.refuse(s, 'BURROW_ERR_TCP_IDLE', `no byte either way for ${idleMs} ms (--tcp-idle-timeout-ms)`);
    };
    s.idleTimer = setTimeout(check, idleMs);
    s.idleTimer.unref();
  }

  /** At most REFUSAL_LOG_LINES_PER_WINDOW refusal lines per window; then one line counting the rest. */
  private mayLogRefusal(): boolean {
    const now = Date.now();
    if (now - this.refusalWindowMs >= REFUSAL_LOG_WINDOW_MS) {
      if (this.refusalsSkipped > 0)
        this.log.info(
          { connector: this.session.peer, skipped: this.refusalsSkipped },
          `${this.refusalsSkipped} more share connections refused (not logged one by one)`,
        );
      this.refusalWindowMs = now;
      this.refusalsLogged = 0;
      this.refusalsSkipped = 0;
    }
    if (this.refusalsLogged < REFUSAL_LOG_LINES_PER_WINDOW) {
      this.refusalsLogged++;
      return true;
    }
    this.refusalsSkipped++;
    return false;
  }

  /** Forgets a connection, once, with a log line: who ended it and why. */
  private finish(s: Splice, reason: Reason | undefined, by?: 'connector' | 'share' | 'relay'): void {
    if (s.done) return;
    s.done = true;
    clearTimeout(s.idleTimer);
    this.splices.delete(s.wireId);
    if (s.ingressId !== undefined) this.ctx.ingress.closeRaw(s.ingressId);
    const fields = {
      share: s.share,
      stream: s.wireId,
      connector: this.session.peer,
      ...(s.target !== undefined ? { target: s.target } : {}),
      ms: Date.now() - s.started,
      bytesUp: s.bytesUp,
      bytesDown: s.bytesDown,
    };
    if (reason === undefined) this.log.debug(fields, 'share connection closed');
    else if (!s.connected && reason.code !== 'BURROW_ERR_CANCELLED') {
      if (this.mayLogRefusal()) this.log.info({ ...fields, code: reason.code, by }, `share connection refused: ${reason.message}`);
    } else this.log.info({ ...fields, code: reason.code, by }, `share connection closed: ${reason.message}`);
  }
}

const REFUSAL_LOG_WINDOW_MS = 10_000;
const REFUSAL_LOG_LINES_PER_WINDOW = 20;

function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
