/**
 * The seam between relay nodes. A Bus delivers stream frames to the node that holds an agent's
 * socket (and back to the node that took the public request), and keeps the registry of which
 * node holds which label. One node is the many-node design with the in-memory implementation.
 */
import type { AccessRules, ErrorCode, FrameType } from '@burrow/protocol';

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
  | { readonly kind: 'sessionReplaced'; readonly sessionId: string }
  /** Close this session now with this code (an operator disconnected it, its token was revoked). */
  | { readonly kind: 'closeSession'; readonly sessionId: string; readonly code: ErrorCode };

export interface Holder {
  readonly nodeId: string;
  readonly sessionId: string;
  /** base64url public key of the agent. */
  readonly keyId: string;
  /** What every ingress node enforces before a request reaches the agent. Small; stored with the lease. */
  readonly policy?: TunnelPolicy;
}

/** Per-tunnel rules, set at registration (agent's access rules, its tenant's limits). */
export interface TunnelPolicy {
  /** Tenant id (token auth mode). */
  readonly tenant?: string;
  readonly access?: AccessRules;
  /** Overrides the relay's --max-body-bytes for this tunnel (the tenant's quota). */
  readonly maxBodyBytes?: number;
  /** The tenant's requests per minute across its tunnels (429 beyond). */
  readonly requestsPerMinute?: number;
  /**
   * Set on a private share's lease (`share:<name>`): what a connecting agent must prove. The
   * secret's digest (base64url SHA-256); an agent of `tenant` needs no secret.
   */
  readonly share?: { readonly secretSha256?: string };
}

export type Lookup =
  | { readonly state: 'online'; readonly holder: Holder }
  /**
   * Its session dropped less than the reconnect grace ago (released with graceMs > 0): the agent
   * is probably reconnecting. Callers may wait for a new claim until `untilMs` (epoch ms).
   */
  | { readonly state: 'reconnecting'; readonly untilMs: number }
  /** Seen before (or a bound name) but no session holds it now. */
  | { readonly state: 'offline' }
  | { readonly state: 'unknown' };

/** What renew() found for one label. */
export type RenewResult =
  /** The lease was this session's and now runs for another lease period. */
  | 'renewed'
  /** No lease was there (it expired, or Redis lost it): this session claimed it again. */
  | 'reclaimed'
  /** Another session holds the label now: this one was replaced. */
  | 'lost';

/** Every method rejects with BurrowError BURROW_ERR_BUS_UNAVAILABLE when the registry cannot be reached. */
export interface Registry {
  /** Makes `holder` the holder of `label`; returns the holder it replaced, if another session. */
  claim(label: string, holder: Holder): Promise<Holder | undefined>;
  /**
   * Releases `label` if `sessionId` still holds it. With graceMs > 0 the label looks
   * 'reconnecting' for that long (the agent dropped and is expected back), then offline.
   */
  release(label: string, sessionId: string, graceMs?: number): Promise<void>;
  /**
   * Keeps this node's leases alive (one call per renewal period, all labels at once). A lease that
   * vanished is claimed again, so leases come back after a registry restart without a reconnect.
   * Results are in the order of `leases`.
   */
  renew(leases: ReadonlyArray<{ readonly label: string; readonly holder: Holder }>): Promise<RenewResult[]>;
  lookup(label: string): Promise<Lookup>;
  /** Binds a friendly name to a key on first claim. Returns the owning keyId (this one if bound now). */
  bindName(name: string, keyId: string): Promise<string>;
  /**
   * Gives `label` a public TCP port of `range`, fleet-wide: the port it had last (kept 24 h) when
   * that one is free or still this label's, else the lowest free port. undefined: the range is
   * exhausted. The port is held for `sessionId` for a lease period; renewPorts keeps it.
   */
  allocatePort(label: string, sessionId: string, range: PortRange): Promise<number | undefined>;
  /** The label a TCP port is allocated to now, if any. */
  portLabel(port: number): Promise<string | undefined>;
  /** Keeps ports held (with the label leases, every renewal period); a lost port is taken back when free. */
  renewPorts(ports: ReadonlyArray<PortLease>): Promise<void>;
  /**
   * Frees `port` if `sessionId` still holds it: at once, or after `keepMs` (the agent dropped and
   * may come back: its label keeps resolving meanwhile).
   */
  releasePort(port: number, sessionId: string, keepMs?: number): Promise<void>;
}

/** An inclusive range of TCP ports, first ≤ last. */
export interface PortRange {
  readonly first: number;
  readonly last: number;
}

/** A TCP port held for one session of a label. */
export interface PortLease {
  readonly port: number;
  readonly label: string;
  readonly sessionId: string;
}

/** Why published messages reached nobody. */
export type UndeliveredReason =
  /** Nothing listens for that node: it died, or never existed. */
  | 'no-listener'
  /** The bus itself (Redis) is unreachable from this node. */
  | 'bus-down';

export interface BusHandlers {
  /** A message addressed to this node. */
  message(message: BusMessage): void;
  /**
   * Messages this node published that reached nobody. Always called asynchronously, never from
   * inside publish(), so a handler may close the streams involved.
   */
  undelivered?(nodeId: string, messages: readonly BusMessage[], reason: UndeliveredReason): void;
  /** The bus lost (false) or regained (true) its connection. Not called for the initial connect. */
  connectionChanged?(up: boolean): void;
}

/** Running totals since the bus was made (for metrics). Messages are bus messages (frames), not Redis commands. */
export interface BusStats {
  readonly published: number;
  readonly publishedBytes: number;
  readonly received: number;
  readonly receivedBytes: number;
  /** Messages reported undelivered. */
  readonly undelivered: number;
  /** Failed bus operations (publish or registry calls that errored, connection errors). */
  readonly errors: number;
}

export interface Bus {
  readonly nodeId: string;
  readonly registry: Registry;
  /** How long a lease lasts without renewal; holders renew well within it. */
  readonly leaseTtlMs: number;
  /** True while the bus can carry messages and answer registry calls. */
  isUp(): boolean;
  /**
   * Sends a message to a node. Messages to one node arrive in publish order. A message to this
   * node is delivered in process (no round trip). Failures are reported to handlers.undelivered.
   */
  publish(nodeId: string, message: BusMessage): void;
  /** Receives messages addressed to this node. Once per bus. */
  subscribe(handlers: BusHandlers): Promise<void>;
  /** Of `nodeIds`, those that no longer listen on the bus (dead nodes). Rejects when the bus is down. */
  absentNodes(nodeIds: readonly string[]): Promise<Set<string>>;
  stats(): BusStats;
  /** Releases subscriptions and connections. Idempotent. */
  close(): Promise<void>;
}
