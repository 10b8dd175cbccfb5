/**
 * One JSON line per finished public request or upgrade on a tunnel host (msg "access", level info),
 * through the relay's pino logger. The path is logged without its query string: queries often
 * carry tokens and signed-URL secrets, and the log outlives them. Builds lines; decides nothing.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { RequestKind } from './metrics';
import { type VisitorAddress, visitorAddressResolver } from './visitorAddress';

/** Longest path and user-agent kept in a line (a request head may be 16 KiB). */
export const MAX_LOGGED_PATH_CHARS = 2048;
export const MAX_LOGGED_USER_AGENT_CHARS = 512;

export interface AccessEntry {
  readonly kind: RequestKind;
  readonly label: string;
  readonly method: string;
  /** Request target without the query string. */
  readonly path: string;
  /** The status sent; 499 when the client left before any response head. */
  readonly status: number;
  /** Why the relay answered or cut the exchange itself (BURROW_ERR_*), if it did. */
  readonly code: string | undefined;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Time to the response head; undefined when none was sent. */
  readonly headMs: number | undefined;
  readonly totalMs: number;
  readonly visitor: string;
  /** The socket's peer, when it differs from the visitor (a trusted proxy). */
  readonly peer: string | undefined;
  readonly userAgent: string | undefined;
}

/** The User-Agent header, cut at MAX_LOGGED_USER_AGENT_CHARS. */
export function loggedUserAgent(ua: string | undefined): string | undefined {
  return ua === undefined || ua.length <= MAX_LOGGED_USER_AGENT_CHARS ? ua : ua.slice(0, MAX_LOGGED_USER_AGENT_CHARS);
}

export interface AccessLogOptions {
  readonly enabled: boolean;
  readonly nodeId: string;
  readonly trustedProxies: readonly string[];
}

/** The request target's path: no query string or fragment, at most MAX_LOGGED_PATH_CHARS. */
export function loggedPath(url: string | undefined): string {
  if (url === undefined) return '';
  let end = url.length;
  const q = url.indexOf('?');
  if (q >= 0) end = q;
  const h = url.indexOf('#');
  if (h >= 0 && h < end) end = h;
  return url.slice(0, Math.min(end, MAX_LOGGED_PATH_CHARS));
}

const ms = (v: number): number => Math.round(v * 100) / 100;

export class AccessLog {
  readonly enabled: boolean;
  /** The visitor's address (see visitorAddress.ts). */
  readonly visitor: VisitorAddress;
  private readonly log: FastifyBaseLogger;

  constructor(log: FastifyBaseLogger, options: AccessLogOptions) {
    this.enabled = options.enabled;
    this.visitor = visitorAddressResolver(options.trustedProxies);
    this.log = log.child({ node: options.nodeId });
  }

  /** Fields that are undefined are left out of the line. */
  write(e: AccessEntry): void {
    if (!this.enabled) return;
    this.log.info(
      {
        kind: e.kind,
        label: e.label,
        method: e.method,
        path: e.path,
        status: e.status,
        code: e.code,
        bytesIn: e.bytesIn,
        bytesOut: e.bytesOut,
        headMs: e.headMs === undefined ? undefined : ms(e.headMs),
        totalMs: ms(e.totalMs),
        visitor: e.visitor,
        peer: e.peer,
        userAgent: e.userAgent,
      },
      'access',
    );
  }
}
