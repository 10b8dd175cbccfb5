/**
 * Relay nodes this node found gone from the bus (a publish reached nobody, or a probe said so).
 * Their leases still name them until they expire; meanwhile requests for their tunnels are
 * treated as reconnecting rather than sent into the void. Entries fade after a lease period,
 * by which time the registry has forgotten the node too.
 */
export class DeadNodes {
  private readonly since = new Map<string, number>();

  constructor(private readonly forgetAfterMs: number) {}

  mark(nodeId: string, nowMs = Date.now()): void {
    if (!this.since.has(nodeId)) this.since.set(nodeId, nowMs);
  }

  /** Heard from again (it listens on the bus again): it is alive. */
  clear(nodeId: string): void {
    this.since.delete(nodeId);
  }

  /** When the node was found dead, if it is believed dead now. */
  deadSince(nodeId: string, nowMs = Date.now()): number | undefined {
    const t = this.since.get(nodeId);
    if (t === undefined) return undefined;
    if (nowMs - t > this.forgetAfterMs) {
      this.since.delete(nodeId);
      return undefined;
    }
    return t;
  }

  get size(): number {
    return this.since.size;
  }
}
