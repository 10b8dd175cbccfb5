/** Hop-by-hop headers of a local response, which must not be relayed (RFC 9110 §7.6.1). */

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

export function filterResponseHeaders(raw: readonly string[], keepUpgrade: boolean): string[] {
  const listed = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'connection') {
      for (const t of (raw[i + 1] as string).split(',')) listed.add(t.trim().toLowerCase());
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = (raw[i] as string).toLowerCase();
    if (keepUpgrade && (lower === 'connection' || lower === 'upgrade')) {
      out.push(raw[i] as string, raw[i + 1] as string);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || listed.has(lower)) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}
