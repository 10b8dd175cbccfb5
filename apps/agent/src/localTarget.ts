/**
 * Where the agent forwards to: `3000`, `host:3000` or a full http(s) URL.
 */

export interface LocalTarget {
  /** 'tcp:' for `burrow tcp` targets (raw bytes, no HTTP). */
  readonly protocol: 'http:' | 'https:' | 'tcp:';
  readonly hostname: string;
  readonly port: number;
  /** For display and logs: http://localhost:3000 */
  readonly origin: string;
}

export class TargetError extends Error {
  readonly code = 'BURROW_ERR_BAD_TARGET';
}

export function parseTarget(spec: string | number): LocalTarget {
  const text = String(spec).trim();
  let url: URL;
  if (/^\d+$/.test(text)) url = new URL(`http://localhost:${text}`);
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    try {
      url = new URL(text);
    } catch {
      throw new TargetError(`"${text}" is not a valid URL`);
    }
  } else {
    try {
      url = new URL(`http://${text}`);
    } catch {
      throw new TargetError(`"${text}" is not a port, host:port or URL`);
    }
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TargetError(`target must be http or https, not ${url.protocol}`);
  if (url.pathname !== '/' || url.search !== '') throw new TargetError(`target "${text}" must not have a path or query; burrow forwards every path`);
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TargetError(`port in "${text}" must be 1-65535`);
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { protocol: url.protocol, hostname, port, origin: `${url.protocol}//${url.host}` };
}

/** A raw TCP target for `burrow tcp`: `5432` (localhost) or `host:5432` (IPv6 in brackets). */
export function parseTcpTarget(spec: string | number): LocalTarget {
  const text = String(spec).trim();
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):)?(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (m === null || port < 1 || port > 65535) throw new TargetError(`"${text}" is not a port or host:port (1-65535)`);
  const host = m[1] ?? 'localhost';
  return { protocol: 'tcp:', hostname: host.startsWith('[') ? host.slice(1, -1) : host, port, origin: `tcp://${host}:${port}` };
}
