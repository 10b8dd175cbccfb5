/**
 * The seam between relay nodes. A Bus delivers stream frames to the node that holds an agent's
 * socket (and back to the node that took the public request), and keeps the registry of which
 * node holds which label. One node is the many-node design with the in-memory implementation.
 */
import type { FrameType } from '@burrow/protocol';

export interface BusFrame {
  readonly type: FrameType;
  readonly flags: number;
  /** The ingress node's stream id (not the agent-wire id). */
  readonly streamId: number;
  readonly payload: Buffer;
}

export type BusMessage =
  /** Ingress node → holder node: a frame for one agent session. */
  | { readonly kind: 'toSession'; readonly sessionId: string; readonly replyNode: string; readonly frame: BusFrame }
  /** Holder node → ingress node: a frame for one public stream. */
  | { readonly kind: 'toIngress'; readonly frame: BusFrame }
  /** A newer session of the same label registered elsewhere: close this one. */
  | { readonly kind: 'sessionReplaced'; readonly sessionId: string };

export interface Holder {
  readonly nodeId: string;
  readonly sessionId: string;
  /** base64url public key of the agent. */
  readonly keyId: string;
}

export type Lookup =
  | { readonly state: 'online'; readonly holder: Holder }
  /** Seen before (or a bound name) but no session holds it now. */
  | { readonly state: 'offline' }
  | { readonly state: 'unknown' };

export interface Registry {
  /** Makes `holder` the holder of `label`; returns the holder it replaced, if another session. */
  claim(label: string, holder: Holder): Promise<Holder | undefined>;
  /** Releases `label` if `sessionId` still holds it. */
  release(label: string, sessionId: string): Promise<void>;
  lookup(label: string): Promise<Lookup>;
  /** Binds a friendly name to a key on first claim. Returns the owning keyId (this one if bound now). */
  bindName(name: string, keyId: string): Promise<string>;
}

export interface Bus {
  readonly nodeId: string;
  readonly registry: Registry;
  /** Sends a message to a node. Returns false when it is known at once that nobody will get it. */
  publish(nodeId: string, message: BusMessage): boolean;
  /** Receives messages addressed to this node. One handler per bus. */
  subscribe(handler: (message: BusMessage) => void): Promise<void>;
  /** Releases subscriptions and connections. Idempotent. */
  close(): Promise<void>;
}
