/**
 * Header rewriting at the relay: hop-by-hop headers removed (RFC 9110 §7.6.1, plus any listed
 * in Connection), X-Forwarded-* added. Works on Node's flat rawHeaders list so order, case and
 * repeats survive.
 */
import type { IncomingMessage } from 'node:http';
import { BurrowError, encodeRequestHead, StreamKind } from '@burrow/protocol';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // The relay answers Expect: 100-continue itself.
  'expect',
  // Replaced below: the relay is the edge and sets them from what it saw.
  'x-forwarded-proto',
  'x-forwarded-host',
]);

export interface ForwardContext {
  readonly remoteAddress: string;
  /** http or https, as the public reached the relay. */
  readonly proto: string;
  readonly upgrade: boolean;
}

/** Names listed in Connection are hop-by-hop too. */
function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).length === 10 && (raw[i] as string).toLowerCase() === 'connection') {
      for (const t of (raw[i + 1] as string).split(',')) {
        const name = t.trim().toLowerCase();
        if (name === '') continue;
        tokens ??= new Set();
        tokens.add(name);
      }
    }
  }
  return tokens;
}

export function forwardRequestHeaders(raw: readonly string[], ctx: ForwardContext): string[] {
  const extra = connectionTokens(raw);
  const out: string[] = [];
  let xff: string | undefined;
  let host = '';
  let chunked = false;
  let upgradeValue: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower === 'host') host = value;
    if (lower === 'x-forwarded-for') {
      xff = xff === undefined ? value : `${xff}, ${value}`;
      continue;
    }
    if (HOP_BY_HOP.has(lower) || extra?.has(lower)) {
      if (lower === 'transfer-encoding') chunked = true;
      if (lower === 'upgrade') upgradeValue = value;
      continue;
    }
    out.push(name, value);
  }
  if (ctx.upgrade && upgradeValue !== undefined) out.push('Connection', 'Upgrade', 'Upgrade', upgradeValue);
  // The body is re-framed by the agent; tell it to chunk when the client did.
  if (chunked) out.push('Transfer-Encoding', 'chunked');
  out.push('X-Forwarded-For', xff === undefined ? ctx.remoteAddress : `${xff}, ${ctx.remoteAddress}`);
  out.push('X-Forwarded-Proto', ctx.proto);
  if (host !== '') out.push('X-Forwarded-Host', host);
  return out;
}

/** Response headers are filtered by the agent; the relay only guards against a lying agent. */
export function hasHopByHop(name: string): boolean {
  const lower = name.toLowerCase();
  return (
    lower === 'connection' ||
    lower === 'transfer-encoding' ||
    lower === 'keep-alive' ||
    lower === 'upgrade' ||
    lower === 'proxy-connection' ||
    lower === 'trailer' ||
    lower === 'te'
  );
}

/**
 * The OPEN payload for a public request: its method, raw target and forwarded headers.
 * Throws BurrowError (BAD_REQUEST, HEADERS_TOO_LARGE) when it cannot be encoded.
 */
export function encodeOpenHead(req: IncomingMessage, proto: string, upgrade: boolean): Buffer {
  try {
    return encodeRequestHead({
      kind: upgrade ? StreamKind.WEBSOCKET : StreamKind.HTTP,
      method: req.method as string,
      target: req.url as string,
      headers: forwardRequestHeaders(req.rawHeaders, { remoteAddress: req.socket.remoteAddress ?? '', proto, upgrade }),
    });
  } catch (err) {
    throw err instanceof BurrowError ? err : new BurrowError('BURROW_ERR_BAD_REQUEST', String(err));
  }
}
