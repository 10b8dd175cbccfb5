/**
 * What the soak runs: a redis-server (two nodes), the relay processes, the local app, and the
 * tunnels: the first half (rounded up) each behind a fault proxy of its own, the rest a control
 * group dialling their relay directly, spread over the nodes in turn. Every agent's going
 * offline and coming back is written in the ledger. Everything is stopped by the kit's cleanup().
 */
import type { Tunnel } from '@burrow/agent';
import { FaultProxy } from '../../test/faultProxy';
import { cleanups, freePort, newKey, startTunnel } from '../../test/kit';
import { type RedisServer, startRedis } from '../../test/redis';
import type { Ledger } from './ledger';
import { startLocalApp } from './localApp';
import type { SoakOptions } from './options';
import { type RelayNode, startRelayNode } from './relayProcess';

/** The relay pings a silent agent after this, and drops it after twice this. */
export const PING_INTERVAL_MS = 1500;
/** The agent gives up on a silent relay after this (a stall is noticed by then). */
export const AGENT_DEAD_AFTER_MS = 3000;
export const LEASE_TTL_MS = 1500;
const RECONNECT_INITIAL_MS = 100;
const RECONNECT_MAX_MS = 1000;

export interface SoakTunnel {
  /** t01, t02, …: names it in the report. */
  readonly name: string;
  readonly label: string;
  /** The relay node its agent is connected to. */
  readonly holder: RelayNode;
  /** Between its agent and its relay; absent for the control group. */
  readonly proxy: FaultProxy | undefined;
  readonly tunnel: Tunnel;
  /** Host header naming this tunnel on `node`. */
  hostOn(node: RelayNode): string;
  /** Streams open in the agent's current session (its stream table); undefined while it has none. */
  agentStreams(): number | undefined;
}

/**
 * The agent keeps its stream table private; the soak reads its size to check that streams end on
 * the agent's side too. A change of those internals throws here (and fails the soak) rather
 * than passing unchecked.
 */
function agentStreamCount(agent: Tunnel['agent']): number | undefined {
  const conn = (agent as unknown as { conn?: { mux?: { size?: unknown } } }).conn;
  if (conn === undefined || conn.mux === undefined) return undefined;
  if (typeof conn.mux.size !== 'number') throw new Error('cannot read the stream table of an agent (Agent.conn.mux.size): update bench/soak/fleet.ts');
  return conn.mux.size;
}

export interface Fleet {
  readonly nodes: readonly RelayNode[];
  readonly tunnels: readonly SoakTunnel[];
  readonly redis: RedisServer | undefined;
}

export async function startFleet(options: SoakOptions, ledger: Ledger, log: (line: string) => void): Promise<Fleet> {
  let redis: RedisServer | undefined;
  if (options.nodes === 2) {
    try {
      redis = await startRedis();
    } catch (err) {
      throw new Error(`${(err as Error).message}; or run the soak on one relay with --nodes 1 (no Redis, no cross-node traffic)`);
    }
    const r = redis;
    cleanups.push(() => r.stop());
    log(`redis-server on port ${redis.port}`);
  }
  const app = await startLocalApp();
  const names = options.nodes === 2 ? ['a', 'b'] : ['a'];
  const ports = await Promise.all(names.map(async () => ({ port: await freePort(), adminPort: await freePort() })));

  // Proxies first: each relay must accept registrations addressed to the proxies in front of it.
  const proxiedCount = Math.ceil(options.tunnels / 2);
  const plan: { name: string; node: number; proxy: FaultProxy | undefined }[] = [];
  for (let i = 0; i < options.tunnels; i++) {
    const node = i % names.length;
    let proxy: FaultProxy | undefined;
    if (i < proxiedCount) {
      const p = await FaultProxy.start({ targetPort: (ports[node] as { port: number }).port });
      cleanups.push(() => p.close());
      proxy = p;
    }
    plan.push({ name: `t${String(i + 1).padStart(2, '0')}`, node, proxy });
  }
  const nodes = await Promise.all(
    names.map((name, n) =>
      startRelayNode({
        name,
        ...(ports[n] as { port: number; adminPort: number }),
        extraAudiences: plan.filter((p) => p.node === n && p.proxy !== undefined).map((p) => `localhost:${(p.proxy as FaultProxy).port}`),
        ...(redis !== undefined ? { redisUrl: redis.url } : {}),
        pingIntervalMs: PING_INTERVAL_MS,
        leaseTtlMs: LEASE_TTL_MS,
      }),
    ),
  );
  log(`relays: ${nodes.map((n) => `${n.name} on port ${n.port} (pid ${n.child.pid})`).join(', ')}`);

  const tunnels = await Promise.all(
    plan.map(async (p): Promise<SoakTunnel> => {
      const holder = nodes[p.node] as RelayNode;
      const relayUrl = p.proxy !== undefined ? `http://localhost:${p.proxy.port}` : holder.url;
      const tunnel = await startTunnel(relayUrl, app.port, {
        keyPair: newKey(),
        deadAfterMs: AGENT_DEAD_AFTER_MS,
        reconnectInitialMs: RECONNECT_INITIAL_MS,
        reconnectMaxMs: RECONNECT_MAX_MS,
        timeoutMs: 15_000,
      });
      const { agent } = tunnel;
      agent.on('offline', (e) => ledger.agentOffline(p.name, e.reason));
      agent.on('reconnecting', (e) => {
        ledger.reconnectAttempts++;
        ledger.agentOffline(p.name, e.reason);
      });
      agent.on('online', (e) => ledger.agentOnline(p.name, e.reconnected));
      agent.on('fatal', (err) => ledger.problems.push(`tunnel ${p.name}: agent stopped: ${err.code}: ${err.message}`));
      return {
        name: p.name,
        label: tunnel.label,
        holder,
        proxy: p.proxy,
        tunnel,
        hostOn: (node) => `${tunnel.label}.localhost:${node.port}`,
        agentStreams: () => agentStreamCount(agent),
      };
    }),
  );
  log(`${tunnels.length} tunnels online: ${proxiedCount} behind fault proxies, ${tunnels.length - proxiedCount} direct (control)`);
  return { nodes, tunnels, redis };
}
