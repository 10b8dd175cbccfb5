/**
 * What the relay's parts share: config, bus, this node's session table and ingress streams.
 * Built once in buildRelay; passed explicitly, never global.
 */
import type { Bus } from '@burrow/bus';
import type { FastifyBaseLogger } from 'fastify';
import type { RelayConfig } from './config';
import type { IngressTable } from './ingressTable';
import type { LocalSessions } from './localSessions';

export interface RelayContext {
  readonly config: RelayConfig;
  readonly bus: Bus;
  readonly nodeId: string;
  readonly sessions: LocalSessions;
  readonly ingress: IngressTable;
  readonly log: FastifyBaseLogger;
  /** Apex URL; known once the server listens. */
  publicUrl(): string;
  /** http or https: the scheme public clients used. */
  publicProto(): string;
}

/** https://<label>.<domain>[:port] from the apex URL. */
export function tunnelUrl(publicUrl: string, label: string): string {
  const u = new URL(publicUrl);
  return `${u.protocol}//${label}.${u.host}`;
}
