/**
 * What the relay's parts share: config, bus, this node's session table and ingress streams.
 * Built once in buildRelay; passed explicitly, never global.
 */
import type { Bus } from '@burrow/bus';
import type { FastifyBaseLogger } from 'fastify';
import type { AccessLog } from './accessLog';
import type { RelayConfig } from './config';
import type { DeadNodes } from './deadNodes';
import type { HolderCache } from './holderCache';
import type { IngressTable } from './ingressTable';
import type { LocalSessions } from './localSessions';
import type { RelayMetrics } from './metrics';
import type { PeerResets } from './peerResets';
import type { Tenancy } from './tenancy/tenancy';

export interface RelayContext {
  readonly config: RelayConfig;
  readonly bus: Bus;
  readonly nodeId: string;
  readonly sessions: LocalSessions;
  readonly ingress: IngressTable;
  /** Nodes found gone from the bus; their tunnels are waited for, not routed to. */
  readonly deadNodes: DeadNodes;
  /** RESETs for the other end of cross-node streams this node ended (sent when the bus is up). */
  readonly peerResets: PeerResets;
  readonly tenancy: Tenancy;
  /** Streams in flight per tenant on this node (tenants with a maxStreams quota). */
  readonly tenantStreams: Map<string, number>;
  /** Recent lookups of tunnels held by other nodes (bodiless requests only). */
  readonly holderCache: HolderCache;
  /** When the bus was last lost and last came back (epoch ms; 0: never). */
  readonly busState: { lostAtMs: number; recoveredAtMs: number };
  /** True once a SIGTERM drain began: no new agents. */
  isDraining(): boolean;
  readonly log: FastifyBaseLogger;
  /** Prometheus metrics of this relay (own registry); requestDone etc. are cheap, call them inline. */
  readonly metrics: RelayMetrics;
  /** One line per finished public request when config.accessLog is on; also resolves visitor addresses. */
  readonly accessLog: AccessLog;
  /** Apex URL; known once the server listens. */
  publicUrl(): string;
  /** http or https: the scheme public clients used. */
  publicProto(): string;
}

/**
 * A tunnel's public URL from the apex URL (which ends in the base path, if any):
 * host form https://<label>.<domain>[:port] (the base path is the apex's alone), or
 * path form https://<domain>[:port]<base>/t/<label>/ (--tunnel-urls path).
 */
export function tunnelUrl(publicUrl: string, label: string, form: 'host' | 'path' = 'host'): string {
  if (form === 'path') return `${publicUrl.replace(/\/+$/, '')}/t/${label}/`;
  const u = new URL(publicUrl);
  return `${u.protocol}//${label}.${u.host}`;
}
