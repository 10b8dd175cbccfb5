/**
 * Decides from the Host header whether a request is for a tunnel (<label>.<domain>) or for the
 * relay's own routes (anything else). Port ignored, case-insensitive, trailing dot tolerated.
 */

export type HostRoute =
  | { readonly kind: 'tunnel'; readonly label: string }
  | { readonly kind: 'apex' }
  /** Under the domain but not a single valid label (a.b.<domain>, bad characters). */
  | { readonly kind: 'invalid'; readonly host: string };

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function hostName(hostHeader: string | undefined): string {
  if (hostHeader === undefined) return '';
  let h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  if (colon >= 0) h = h.slice(0, colon);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

export function makeHostRouter(domain: string): (hostHeader: string | undefined) => HostRoute {
  const suffix = `.${domain}`;
  const apex: HostRoute = { kind: 'apex' };
  return (hostHeader) => {
    const host = hostName(hostHeader);
    if (!host.endsWith(suffix)) return apex;
    const label = host.slice(0, -suffix.length);
    if (!LABEL.test(label)) return { kind: 'invalid', host };
    return { kind: 'tunnel', label };
  };
}
