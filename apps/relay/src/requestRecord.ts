/**
 * What one public exchange on a tunnel host did, kept while it runs and reported once when it
 * ends: to the metrics (always) and the access log (when on). tunnelHttp.ts and tunnelUpgrade.ts
 * call finish() from the one event that ends every exchange (the response's or socket's close);
 * finish() ignores calls after the first, so nothing is counted twice.
 */
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { loggedPath, loggedUserAgent } from './accessLog';
import type { RequestKind } from './metrics';
import type { RelayContext } from './relayContext';

/** Status recorded when the client left before any response head (nginx's convention). */
export const CLIENT_CLOSED_STATUS = 499;

export class RequestRecord {
  bytesIn = 0;
  bytesOut = 0;
  /** Why the relay answered or cut the exchange itself; the first reason given wins. */
  code: string | undefined;
  /** Status of the response head sent, once one was. */
  status: number | undefined;
  private readonly startMs = performance.now();
  private headMs: number | undefined;
  private done = false;
  /** Read at once: the socket's address is gone once it is destroyed. */
  private readonly peer: string | undefined;
  private readonly visitor: string | undefined;

  constructor(
    private readonly ctx: RelayContext,
    private readonly req: IncomingMessage,
    readonly kind: RequestKind,
    readonly label: string,
  ) {
    if (ctx.accessLog.enabled) {
      this.peer = req.socket.remoteAddress ?? '';
      this.visitor = ctx.accessLog.visitor(req);
    }
  }

  /** The response head went out with this status (the first call counts). */
  responded(status: number): void {
    if (this.status !== undefined) return;
    this.status = status;
    this.headMs = performance.now() - this.startMs;
  }

  fail(code: string): void {
    this.code ??= code;
  }

  /**
   * The exchange is over. `status`: the one sent, when responded() was not told (relay-made
   * answers); with neither, the client left before any head (499). `complete`: false when the
   * connection closed before the response did (the client left, unless a code says otherwise).
   */
  finish(status?: number, complete = true): void {
    if (this.done) return;
    this.done = true;
    const totalMs = performance.now() - this.startMs;
    const sent = this.status ?? status;
    if (sent === undefined || !complete) this.fail('BURROW_ERR_CANCELLED');
    const finalStatus = sent ?? CLIENT_CLOSED_STATUS;
    // A head sent without responded() (a relay-made error page) went out moments before the end.
    const headMs = this.headMs ?? (sent === undefined ? undefined : totalMs);
    const { ctx, req } = this;
    ctx.metrics.requestDone(this.kind, finalStatus, headMs, totalMs, this.bytesIn, this.bytesOut);
    if (!ctx.accessLog.enabled) return;
    const peer = this.peer ?? '';
    const visitor = this.visitor ?? peer;
    ctx.accessLog.write({
      kind: this.kind,
      label: this.label,
      method: req.method ?? '',
      path: loggedPath(req.url),
      status: finalStatus,
      code: this.code,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      headMs,
      totalMs,
      visitor,
      peer: peer === visitor ? undefined : peer,
      userAgent: loggedUserAgent(req.headers['user-agent']),
    });
  }
}
