/**
 * Recent registry answers (label → holder on another node), so that a bodiless request needs
 * no Redis round trip before it is sent. An entry lives a second at most; a stale one costs a
 * resend, never an error: the old holder answers BURROW_ERR_SESSION_GONE before any agent saw
 * the request, and the request is sent again after a fresh lookup.
 */
import type { Holder } from '@burrow/bus';

export const HOLDER_CACHE_TTL_MS = 1000;
const MAX_ENTRIES = 10_000;

export class HolderCache {
  private readonly entries = new Map<string, { readonly holder: Holder; readonly expiresAt: number }>();

  constructor(private readonly ttlMs = HOLDER_CACHE_TTL_MS) {}

  get(label: string, nowMs = Date.now()): Holder | undefined {
    const e = this.entries.get(label);
    if (e === undefined) return undefined;
    if (e.expiresAt <= nowMs) {
      this.entries.delete(label);
      return undefined;
    }
    return e.holder;
  }

  set(label: string, holder: Holder, nowMs = Date.now()): void {
    // Bounded: past the limit start afresh (every entry is a second from expiring anyway).
    if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
    this.entries.set(label, { holder, expiresAt: nowMs + this.ttlMs });
  }

  delete(label: string): void {
    this.entries.delete(label);
  }

  /** Forgets every holder on these nodes (they died). */
  dropNodes(nodes: ReadonlySet<string>): void {
    for (const [label, e] of this.entries) if (nodes.has(e.holder.nodeId)) this.entries.delete(label);
  }

  get size(): number {
    return this.entries.size;
  }
}
