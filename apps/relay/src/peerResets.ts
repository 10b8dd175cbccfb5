/**
 * RESETs for the other end of cross-node streams. When this node ends a stream whose other end
 * is on another node (that node looked gone, the bus was down, the agent's session closed), the
 * other node must hear of it too, or its half waits for frames that never come: an ingress for
 * its request timeout, a holder with the app's response open for good. A RESET goes out at once
 * when the bus is up, else as soon as it is back. A RESET for a stream the other node no longer
 * has is ignored there, so sending one too many is harmless; one too few is a leak.
 */
import type { Bus, BusMessage } from '@burrow/bus';

/**
 * Most RESETs kept while the bus is down: one per cross-node stream open when it went down. Past
 * it the oldest are dropped (those streams then end at the other node's own timeouts).
 */
export const MAX_OWED_RESETS = 100_000;

export class PeerResets {
  private owed: { readonly node: string; readonly message: BusMessage }[] = [];

  constructor(private readonly bus: Bus) {}

  /** Sends `message` (a RESET) to `node` now if the bus is up, else once it is back. */
  send(node: string, message: BusMessage): void {
    if (node === this.bus.nodeId || this.bus.isUp()) this.bus.publish(node, message);
    else this.keep(node, message);
  }

  /** Sends `message` once the bus is back (it just failed to go out). */
  keep(node: string, message: BusMessage): void {
    if (this.owed.length >= MAX_OWED_RESETS) this.owed.shift();
    this.owed.push({ node, message });
  }

  /** RESETs waiting for the bus. */
  get size(): number {
    return this.owed.length;
  }

  /** The bus is back: sends what is owed. */
  flush(): void {
    const owed = this.owed;
    this.owed = [];
    for (const { node, message } of owed) this.bus.publish(node, message);
  }
}
