/**
 * Who a public request came from. The socket's peer, unless that peer is a trusted proxy: then
 * X-Forwarded-For is walked from the right, past trusted hops, and the first untrusted address is
 * the visitor (@fastify/proxy-addr, the algorithm Express and Fastify use). A peer that is not
 * trusted cannot make the relay believe anything its X-Forwarded-For says. Logs nothing.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import proxyAddr from '@fastify/proxy-addr';

export type VisitorAddress = (req: IncomingMessage) => string;

/** `trusted`: addresses and CIDRs (as validated by config.ts). */
export function visitorAddressResolver(trusted: readonly string[]): VisitorAddress {
  if (trusted.length === 0) return (req) => req.socket.remoteAddress ?? '';
  const trust = proxyAddr.compile([...trusted]);
  return (req) => {
    const peer = req.socket.remoteAddress;
    if (peer === undefined) return '';
    // Nearest hop first, cut after the first address that is not trusted.
    const chain = proxyAddr.all(req, trust);
    const visitor = chain[chain.length - 1] as string;
    // A trusted proxy that forwarded garbage ("unknown", a host name): the nearest believable hop.
    return isIP(visitor) !== 0 ? visitor : (chain[chain.length - 2] ?? peer);
  };
}
