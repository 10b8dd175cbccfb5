/**
 * In-process Bus. Several MemoryBus instances on one MemoryHub behave as relay nodes sharing a
 * registry, which is how multi-node routing is tested without Redis. Delivery is synchronous
 * and passes frames by reference (no encoding).
 */
import { BurrowError } from '@burrow/protocol';
import type { Bus, BusHandlers, BusMessage, BusStats, Holder, Lookup, PortLease, PortRange, Registry, RenewResult } from './bus';

export interface MemoryHubOptions {
  /** How long a released label is still reported offline (502) rather than unknown (404). */
  readonly offlineMemoryMs?: number;
  /** Most released labels remembered; the oldest are forgotten first. */
  readonly maxOfflineLabels?: number;
  /** Most friendly-name bindings kept; binding a new name beyond it fails with BURROW_ERR_NAME_LIMIT. */
  readonly maxNames?: number;
  /**
   * Friendly-name bindings to start from, and where new ones go, so that a single relay keeps
   * them across restarts (the relay persists them; this package does no I/O).
   */
  readonly names?: NameBindings;
  /** Reported as Bus.leaseTtlMs; in-process leases never expire (the process is the node). */
  readonly leaseTtlMs?: number;
}

export interface NameBindings {
  /** name → keyId bindings made before. */
  readonly initial: Iterable<readonly [string, string]>;
  /** Called once for each new binding, before bindName resolves; a throw refuses the binding. */
  readonly onBind: (name: string, keyId: string) => void;
}

const DEFAULT_OFFLINE_MEMORY_MS = 24 * 60 * 60 * 1000;
const DEFAULT_MAX_OFFLINE_LABELS = 100_000;
const DEFAULT_MAX_NAMES = 100_000;

class MemoryRegistry implements Registry {
  private readonly holders = new Map<string, Holder>();
  /** label → time released; insertion order is age order. */
  private readonly offline = new Map<string, number>();
  /** label → until when it is reported reconnecting. */
  private readonly reconnecting = new Map<string, number>();
  private readonly names: Map<string, string>;
  /** port → holder; `expiresAt` once released with a keep period. */
  private readonly ports = new Map<number, { label: string; sessionId: string; expiresAt: number | undefined }>();
  /** label → the port it had last. */
  private readonly lastPort = new Map<string, number>();
  constructor(
    private readonly options: Required<Omit<MemoryHubOptions, 'names' | 'leaseTtlMs'>>,
    private readonly bindings: NameBindings | undefined,
  ) {
    this.names = new Map(bindings?.initial ?? []);
  }

  async claim(label: string, holder: Holder): Promise<Holder | undefined> {
    const previous = this.holders.get(label);
    this.holders.set(label, holder);
    this.offline.delete(label);
    this.reconnecting.delete(label);
    return previous !== undefined && previous.sessionId !== holder.sessionId ? previous : undefined;
  }

  async release(label: string, sessionId: string, graceMs = 0): Promise<void> {
    if (this.holders.get(label)?.sessionId !== sessionId) return;
    this.holders.delete(label);
    if (graceMs > 0) this.reconnecting.set(label, Date.now() + graceMs);
    this.offline.set(label, Date.now());
    while (this.offline.size > this.options.maxOfflineLabels) {
      const oldest = this.offline.keys().next().value as string;
      this.offline.delete(oldest);
    }
  }

  async lookup(label: string): Promise<Lookup> {
    return this.lookupNow(label);
  }

  lookupNow(label: string): Lookup {
    const holder = this.holders.get(label);
    if (holder !== undefined) return { state: 'online', holder };
    const until = this.reconnecting.get(label);
    if (until !== undefined) {
      if (until > Date.now()) return { state: 'reconnecting', untilMs: until };
      this.reconnecting.delete(label);
    }
    const released = this.offline.get(label);
    if (released !== undefined) {
      if (Date.now() - released <= this.options.offlineMemoryMs) return { state: 'offline' };
      this.offline.delete(label);
    }
    return this.names.has(label) ? { state: 'offline' } : { state: 'unknown' };
  }

  async renew(leases: ReadonlyArray<{ readonly label: string; readonly holder: Holder }>): Promise<RenewResult[]> {
    return leases.map(({ label, holder }) => {
      const current = this.holders.get(label);
      if (current === undefined) {
        this.holders.set(label, holder);
        this.offline.delete(label);
        this.reconnecting.delete(label);
        return 'reclaimed';
      }
      return current.sessionId === holder.sessionId ? 'renewed' : 'lost';
    });
  }

  private portHolder(port: number): { label: string; sessionId: string } | undefined {
    const p = this.ports.get(port);
    if (p === undefined) return undefined;
    if (p.expiresAt !== undefined && p.expiresAt <= Date.now()) {
      this.ports.delete(port);
      return undefined;
    }
    return p;
  }

  async allocatePort(label: string, sessionId: string, range: PortRange): Promise<number | undefined> {
    const last = this.lastPort.get(label);
    const candidates = last !== undefined && last >= range.first && last <= range.last ? [last] : [];
    for (const port of candidates.concat(Array.from({ length: range.last - range.first + 1 }, (_, i) => range.first + i))) {
      const held = this.portHolder(port);
      if (held !== undefined && held.label !== label) continue;
      this.ports.set(port, { label, sessionId, expiresAt: undefined });
      this.lastPort.set(label, port);
      return port;
    }
    return undefined;
  }

  async portLabel(port: number): Promise<string | undefined> {
    return this.portHolder(port)?.label;
  }

  async renewPorts(ports: ReadonlyArray<PortLease>): Promise<void> {
    for (const { port, label, sessionId } of ports) {
      const held = this.portHolder(port);
      if (held === undefined) this.ports.set(port, { label, sessionId, expiresAt: undefined });
    }
  }

  async releasePort(port: number, sessionId: string, keepMs = 0): Promise<void> {
    const held = this.ports.get(port);
    if (held === undefined || held.sessionId !== sessionId) return;
    if (keepMs > 0) held.expiresAt = Date.now() + keepMs;
    else this.ports.delete(port);
  }

  async bindName(name: string, keyId: string): Promise<string> {
    const owner = this.names.get(name);
    if (owner !== undefined) return owner;
    if (this.names.size >= this.options.maxNames) {
      throw new BurrowError(
        'BURROW_ERR_NAME_LIMIT',
        `this relay already holds ${this.names.size} friendly names; use the key's own URL, or ask the operator to raise --max-names`,
      );
    }
    this.bindings?.onBind(name, keyId);
    this.names.set(name, keyId);
    return keyId;
  }
}

/** The shared medium of in-process nodes. */
export class MemoryHub {
  readonly registry: MemoryRegistry;
  readonly leaseTtlMs: number;
  private readonly nodes = new Map<string, (message: BusMessage) => void>();
  constructor(options: MemoryHubOptions = {}) {
    this.registry = new MemoryRegistry(
      {
        offlineMemoryMs: options.offlineMemoryMs ?? DEFAULT_OFFLINE_MEMORY_MS,
        maxOfflineLabels: options.maxOfflineLabels ?? DEFAULT_MAX_OFFLINE_LABELS,
        maxNames: options.maxNames ?? DEFAULT_MAX_NAMES,
      },
      options.names,
    );
    this.leaseTtlMs = options.leaseTtlMs ?? 10_000;
  }
  attach(nodeId: string, handler: (message: BusMessage) => void): void {
    if (this.nodes.has(nodeId)) throw new Error(`node id ${nodeId} is already attached to this hub`);
    this.nodes.set(nodeId, handler);
  }
  detach(nodeId: string): void {
    this.nodes.delete(nodeId);
  }
  has(nodeId: string): boolean {
    return this.nodes.has(nodeId);
  }
  deliver(nodeId: string, message: BusMessage): boolean {
    const handler = this.nodes.get(nodeId);
    if (handler === undefined) return false;
    handler(message);
    return true;
  }
}

export class MemoryBus implements Bus {
  readonly registry: Registry;
  readonly leaseTtlMs: number;
  private handlers: BusHandlers | undefined;
  private readonly counts = { published: 0, publishedBytes: 0, received: 0, receivedBytes: 0, undelivered: 0, errors: 0 };
  constructor(
    readonly nodeId: string,
    private readonly hub: MemoryHub = new MemoryHub(),
  ) {
    this.registry = hub.registry;
    this.leaseTtlMs = hub.leaseTtlMs;
  }

  isUp(): boolean {
    return true;
  }

  publish(nodeId: string, message: BusMessage): void {
    const bytes = 'frame' in message ? message.frame.payload.length : 0;
    this.counts.published++;
    this.counts.publishedBytes += bytes;
    if (this.hub.deliver(nodeId, message)) return;
    this.counts.undelivered++;
    const handlers = this.handlers;
    if (handlers?.undelivered !== undefined) queueMicrotask(() => handlers.undelivered?.(nodeId, [message], 'no-listener'));
  }

  async subscribe(handlers: BusHandlers): Promise<void> {
    if (this.handlers !== undefined) throw new Error('MemoryBus.subscribe called twice');
    // Attach first: if the id is taken, this bus must not think it holds it (close() would detach the holder).
    this.hub.attach(this.nodeId, (message) => {
      this.counts.received++;
      this.counts.receivedBytes += 'frame' in message ? message.frame.payload.length : 0;
      handlers.message(message);
    });
    this.handlers = handlers;
  }

  stats(): BusStats {
    return { ...this.counts };
  }

  async absentNodes(nodeIds: readonly string[]): Promise<Set<string>> {
    return new Set(nodeIds.filter((id) => !this.hub.has(id)));
  }

  async close(): Promise<void> {
    if (this.handlers === undefined) return;
    this.handlers = undefined;
    this.hub.detach(this.nodeId);
  }
}
