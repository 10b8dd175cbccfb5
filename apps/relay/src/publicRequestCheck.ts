/**
 * Checks a public request that Node's parser accepted before anything routes it: the things a
 * lenient parse lets through but that would let the relay and the next hop (the local app, or a
 * proxy in front) disagree about which host or message this is. Refuses with a coded answer;
 * rewrites an absolute-form target to origin-form. Pure apart from that one rewrite of req.url.
 */
import type { IncomingMessage } from 'node:http';
import type { ErrorCode } from '@burrow/protocol';
import { hostName } from './hostRouter';

/** Longest request target (URL) accepted; longer gets 414. Node's 16 KiB head limit (431) lies beyond it. */
export const MAX_URL_BYTES = 8192;

export interface RequestRefusal {
  readonly code: ErrorCode;
  readonly message: string;
}

/** RFC 3986 host (reg-name, IPv4 or a bracketed IPv6 literal) with an optional port; empty is allowed. */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::\d{0,5})?$/;
/** An absolute-form target: scheme, authority, then the rest (path, query). */
const ABSOLUTE_FORM = /^(?:https?|wss?):\/\/([^/?#]*)(.*)$/is;

const refuse = (code: ErrorCode, message: string): RequestRefusal => ({ code, message });

export function checkPublicRequest(req: IncomingMessage): RequestRefusal | undefined {
  // A text request line claiming HTTP/2 or HTTP/0.x is not an HTTP/1 message the agent can re-send.
  if (req.httpVersionMajor !== 1) return refuse('BURROW_ERR_BAD_REQUEST', `HTTP/${req.httpVersion} is not served on this port; use HTTP/1.1`);
  const raw = req.rawHeaders;
  let hosts = 0;
  let host: string | undefined;
  let transferEncoding = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      hosts++;
      host = raw[i + 1] as string;
    } else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') transferEncoding = true;
  }
  // RFC 9112 §3.2: 400 for a second Host (Node keeps the first; an app or proxy may take the last)...
  if (hosts > 1) return refuse('BURROW_ERR_BAD_REQUEST', 'the request has more than one Host header');
  // ...for an HTTP/1.1 request without one...
  if (hosts === 0 && req.httpVersionMinor >= 1) return refuse('BURROW_ERR_BAD_REQUEST', 'an HTTP/1.1 request needs a Host header');
  // ...and for an invalid one (the routing would read only the part before a space or '@').
  if (host !== undefined && !HOST_VALUE.test(host))
    return refuse('BURROW_ERR_BAD_REQUEST', 'the Host header is not a host name, IP address or [IPv6] with an optional port');
  // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
  if (transferEncoding && req.httpVersionMinor === 0) return refuse('BURROW_ERR_BAD_REQUEST', 'Transfer-Encoding is not allowed in an HTTP/1.0 request');
  const target = req.url ?? '';
  if (target.length > MAX_URL_BYTES)
    return refuse('BURROW_ERR_URL_TOO_LARGE', `the request target is ${target.length} bytes; at most ${MAX_URL_BYTES} are accepted`);
  if (target.startsWith('/')) return undefined;
  if (target === '*') return req.method === 'OPTIONS' ? undefined : refuse('BURROW_ERR_BAD_REQUEST', `"*" is a target for OPTIONS only, not ${req.method}`);
  // Absolute-form (GET http://host/path): routed by Host, so the two must name the same host; the
  // app then gets origin-form, never a URL naming some other host (an app that proxies would fetch it).
  const m = ABSOLUTE_FORM.exec(target);
  if (m === null) return refuse('BURROW_ERR_BAD_REQUEST', 'the request target is neither a path nor an http(s) URL');
  const authority = m[1] as string;
  if (authority.includes('@')) return refuse('BURROW_ERR_BAD_REQUEST', 'the request target carries user information');
  if (hostName(authority) !== hostName(host)) return refuse('BURROW_ERR_BAD_REQUEST', 'the request target names another host than the Host header');
  const rest = m[2] as string;
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  return undefined;
}
