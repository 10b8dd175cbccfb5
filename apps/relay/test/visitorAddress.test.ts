/**
 * The visitor's address: the socket's peer unless that peer is a trusted proxy, then the first
 * untrusted address walking X-Forwarded-For from the right. No sockets: requests are stand-ins.
 */
import type { IncomingMessage } from 'node:http';
import { visitorAddressResolver } from '../src/visitorAddress';

const req = (remoteAddress: string | undefined, xff?: string): IncomingMessage =>
  ({ socket: { remoteAddress }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as unknown as IncomingMessage;

describe('visitorAddressResolver', () => {
  test('with no trusted proxies, the peer is the visitor and X-Forwarded-For is ignored', () => {
    const visitor = visitorAddressResolver([]);
    expect(visitor(req('203.0.113.7'))).toBe('203.0.113.7');
    expect(visitor(req('203.0.113.7', '1.2.3.4'))).toBe('203.0.113.7');
    expect(visitor(req(undefined))).toBe('');
  });

  test('a trusted proxy (single IPv4) is believed', () => {
    const visitor = visitorAddressResolver(['10.0.0.2']);
    expect(visitor(req('10.0.0.2', '198.51.100.9'))).toBe('198.51.100.9');
    // No header: the proxy itself is all we know.
    expect(visitor(req('10.0.0.2'))).toBe('10.0.0.2');
  });

  test('a spoofed X-Forwarded-For from an untrusted peer is ignored', () => {
    const visitor = visitorAddressResolver(['10.0.0.0/8']);
    expect(visitor(req('203.0.113.50', '10.1.1.1, 127.0.0.1'))).toBe('203.0.113.50');
  });

  test('walks from the right past trusted hops (CIDR), stopping at the first untrusted address', () => {
    const visitor = visitorAddressResolver(['10.0.0.0/8', '192.168.1.0/24']);
    // client, its own spoofed entry, a CDN hop we do not trust, then our two proxies.
    expect(visitor(req('10.0.0.2', '6.6.6.6, 198.51.100.1, 192.168.1.20'))).toBe('198.51.100.1');
    // Every hop trusted: the leftmost address is the visitor.
    expect(visitor(req('10.0.0.2', '192.168.1.99, 10.9.9.9'))).toBe('192.168.1.99');
    // Outside the /24: untrusted, so the walk stops there.
    expect(visitor(req('10.0.0.2', '198.51.100.1, 192.168.2.20'))).toBe('192.168.2.20');
  });

  test('IPv6 peers and CIDRs, and IPv4-mapped peers against IPv4 ranges', () => {
    const visitor = visitorAddressResolver(['fd00::/8', '127.0.0.1']);
    expect(visitor(req('fd00::1', '2001:db8::5'))).toBe('2001:db8::5');
    expect(visitor(req('fe80::1', '2001:db8::5'))).toBe('fe80::1');
    expect(visitor(req('::ffff:127.0.0.1', '198.51.100.4'))).toBe('198.51.100.4');
    expect(visitor(req('::1', '198.51.100.4'))).toBe('::1');
  });

  test('several X-Forwarded-For headers (joined by Node) and odd spacing', () => {
    const visitor = visitorAddressResolver(['127.0.0.1']);
    expect(visitor(req('127.0.0.1', ' 198.51.100.4 ,203.0.113.1 '))).toBe('203.0.113.1');
  });

  test('garbage forwarded by a trusted proxy gives the nearest believable hop', () => {
    const visitor = visitorAddressResolver(['10.0.0.0/8']);
    expect(visitor(req('10.0.0.2', 'unknown'))).toBe('10.0.0.2');
    expect(visitor(req('10.0.0.2', 'not-an-ip, 10.0.0.9'))).toBe('10.0.0.9');
  });
});
