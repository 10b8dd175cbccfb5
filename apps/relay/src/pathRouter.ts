/**
 * Decides from the path of a request on the apex host where it goes: to the relay's own routes
 * (with the base path removed), or, with path routing on, to a tunnel at <base>/t/<label>/…
 * (with <base>/t/<label> removed, the query kept). The router is pure: buildRelay applies its
 * result (rewrites req.url, then Fastify or the tunnel handlers); sendRedirect answers redirects.
 *
 * The base path is removed in whichever form a proxy in front passes it on:
 *   kept        /unlynx/x  → /x   (nginx `location /unlynx/ { proxy_pass http://relay; }`)
 *   rewritten   //x        → /x   (nginx `location /unlynx { proxy_pass http://relay/; }`)
 *   stripped    /x         → /x   (nginx `location /unlynx/ { proxy_pass http://relay/; }`)
 * so the relay works behind any of them; redirects it makes always carry the base path, which is
 * what the public sees.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendError } from './errorResponse';

export type PathRoute =
  /** The relay's own routes; `url` is the request target without the base path. */
  | { readonly kind: 'relay'; readonly url: string }
  /** A tunnel; `url` is the target its local app sees: the rest of the path and the query. */
  | { readonly kind: 'tunnel'; readonly label: string; readonly url: string }
  /**
   * <base>/t/<label> without the slash: redirect plain requests to `location` so relative links
   * resolve under the tunnel; upgrades (clients do not follow redirects) go to `url` ('/'+query).
   */
  | { readonly kind: 'redirect'; readonly label: string; readonly location: string; readonly url: string }
  /** <base>/t/<name>/ where name is not a tunnel label. */
  | { readonly kind: 'invalid'; readonly name: string };

export interface PathRouterOptions {
  /** '' or '/unlynx' (validated by config: no trailing slash). */
  readonly basePath: string;
  readonly pathRouting: boolean;
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Tunnels by path live under this prefix (after the base path). */
export const TUNNEL_PATH_PREFIX = '/t/';

/** The request path with the base path removed (kept, '//'-rewritten or already stripped). */
export function stripBasePath(path: string, basePath: string): string {
  if (basePath === '') return path;
  if (path.startsWith(basePath)) {
    const rest = path.slice(basePath.length);
    if (rest === '') return '/';
    if (rest.startsWith('/')) return rest;
  }
  // A proxy that maps /unlynx to / turns /unlynx/x into //x.
  if (path.startsWith('//')) return path.slice(1);
  return path;
}

export function makePathRouter(options: PathRouterOptions): (url: string | undefined) => PathRoute {
  const { basePath, pathRouting } = options;
  return (url) => {
    const target = url ?? '/';
    // Nothing to do: the common case of a relay at the root without path routing.
    if (basePath === '' && !pathRouting) return { kind: 'relay', url: target };
    // Absolute-form targets (GET http://host/x) are left to Fastify as they are.
    if (!target.startsWith('/')) return { kind: 'relay', url: target };
    const q = target.indexOf('?');
    const rawPath = q < 0 ? target : target.slice(0, q);
    const query = q < 0 ? '' : target.slice(q);
    const path = stripBasePath(rawPath, basePath);
    if (pathRouting && path.startsWith(TUNNEL_PATH_PREFIX)) {
      const rest = path.slice(TUNNEL_PATH_PREFIX.length);
      const slash = rest.indexOf('/');
      const name = slash < 0 ? rest : rest.slice(0, slash);
      if (name !== '') {
        const label = name.toLowerCase();
        if (!LABEL.test(label)) return { kind: 'invalid', name };
        if (slash < 0) return { kind: 'redirect', label, location: `${basePath}${TUNNEL_PATH_PREFIX}${label}/${query}`, url: `/${query}` };
        return { kind: 'tunnel', label, url: `${rest.slice(slash)}${query}` };
      }
    }
    return { kind: 'relay', url: path === rawPath ? target : `${path}${query}` };
  };
}

/** 308 to `location` (same method and body on the retry); the request body, if any, is discarded. */
export function sendRedirect(req: IncomingMessage, res: ServerResponse, location: string): void {
  req.resume();
  const body = `Redirecting to ${location}\n`;
  try {
    res.writeHead(308, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  } catch {
    // Node's parser lets no such target through; should one come, it is no header value.
    sendError(req, res, 'BURROW_ERR_BAD_REQUEST', 'this request target cannot be redirected');
    return;
  }
  res.end(body);
}
