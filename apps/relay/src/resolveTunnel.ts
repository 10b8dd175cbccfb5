/**
 * Label → holder: this node's session table first (no await on the hot path), then the bus
 * registry. Unknown labels are 404, known ones without an agent 502, a registry out of reach
 * 503. A label whose agent dropped moments ago (or whose node just died) is waited for, up to
 * the reconnect grace, so a reconnecting agent costs its visitors a delay rather than an error.
 */
import type { Holder } from '@burrow/bus';
import { BurrowError, type ErrorCode } from '@burrow/protocol';
import type { RelayContext } from './relayContext';

export type Resolution = { readonly holder: Holder } | { readonly error: ErrorCode; readonly message: string };

/** How often a waiting request asks the registry again. */
export const RECONNECT_POLL_MS = 50;
/**
 * After the bus comes back, a label may read unknown until its holder node reconnects too and
 * re-announces it (Redis may have lost everything): unknown labels are waited for this long.
 */
export const BUS_RECOVERY_WAIT_MS = 2000;

export function resolveLocal(ctx: RelayContext, label: string): Holder | undefined {
  const s = ctx.sessions.byLabel.get(label);
  return s?.isActive ? s.holder() : undefined;
}

/** Requests waiting on the same label share one poll. */
const waits = new WeakMap<RelayContext, Map<string, Promise<Resolution>>>();

/** Never rejects: every failure is a Resolution with an error code. */
export function resolveRemote(ctx: RelayContext, label: string): Promise<Resolution> {
  let perCtx = waits.get(ctx);
  if (perCtx === undefined) {
    perCtx = new Map();
    waits.set(ctx, perCtx);
  }
  const pending = perCtx.get(label);
  if (pending !== undefined) return pending;
  const table = perCtx;
  const p = resolveWithGrace(ctx, label).finally(() => table.delete(label));
  table.set(label, p);
  return p;
}

/** True when `nodeId` listens on the bus (again); false when the bus cannot tell. */
async function listening(ctx: RelayContext, nodeId: string): Promise<boolean> {
  try {
    return !(await ctx.bus.absentNodes([nodeId])).has(nodeId);
  } catch {
    return false;
  }
}

async function resolveWithGrace(ctx: RelayContext, label: string): Promise<Resolution> {
  // Never wait past the request timeout: the visitor would get a 504 instead.
  const hardDeadline = Date.now() + ctx.config.requestTimeoutMs;
  let waited = false;
  let unknownUntil: number | undefined;
  for (;;) {
    const local = resolveLocal(ctx, label);
    if (local !== undefined) return { holder: local };
    let found: Awaited<ReturnType<RelayContext['bus']['registry']['lookup']>>;
    try {
      found = await ctx.bus.registry.lookup(label);
    } catch (err) {
      if (err instanceof BurrowError && err.code === 'BURROW_ERR_BUS_UNAVAILABLE') {
        return { error: err.code, message: `this relay node cannot reach Redis to find tunnel "${label}"; try again shortly` };
      }
      ctx.log.error({ err, label }, 'tunnel lookup failed');
      return { error: 'BURROW_ERR_INTERNAL', message: 'the relay could not look this tunnel up; try again' };
    }
    let waitUntil: number;
    switch (found.state) {
      case 'online': {
        const nodeId = found.holder.nodeId;
        const deadSince = nodeId === ctx.nodeId ? undefined : ctx.deadNodes.deadSince(nodeId);
        if (deadSince === undefined) return { holder: found.holder };
        // Found gone, yet its lease stands: it may only have blinked (its Redis connection dropped
        // and came back). Listening again, it is alive: route to it rather than wait a lease out.
        if (await listening(ctx, nodeId)) {
          ctx.deadNodes.clear(nodeId);
          return { holder: found.holder };
        }
        // Its node died; the lease will expire, and the agent is likely reconnecting elsewhere.
        waitUntil = deadSince + ctx.config.reconnectGraceMs;
        break;
      }
      case 'reconnecting':
        waitUntil = found.untilMs;
        break;
      case 'offline':
        return {
          error: 'BURROW_ERR_TUNNEL_OFFLINE',
          message: waited
            ? `tunnel "${label}" did not come back within ${ctx.config.reconnectGraceMs} ms; start its agent again`
            : `tunnel "${label}" is known but its agent is not connected; start the agent again`,
        };
      case 'unknown': {
        // Redis may have come back empty: a label is unknown until its holder node re-announces it.
        // Recovering = lost and not yet reported back (commands can work before the subscription
        // does), or back less than BUS_RECOVERY_WAIT_MS ago.
        const { lostAtMs, recoveredAtMs } = ctx.busState;
        const now = Date.now();
        const recovering = lostAtMs > recoveredAtMs || (recoveredAtMs !== 0 && now - recoveredAtMs < BUS_RECOVERY_WAIT_MS);
        if (!recovering) return { error: 'BURROW_ERR_UNKNOWN_TUNNEL', message: `no tunnel is named "${label}" on this relay` };
        unknownUntil ??= Math.max(now, recoveredAtMs) + BUS_RECOVERY_WAIT_MS;
        waitUntil = unknownUntil;
        break;
      }
    }
    const now = Date.now();
    const until = Math.min(waitUntil, hardDeadline);
    if (now >= until) {
      if (found.state === 'unknown') return { error: 'BURROW_ERR_UNKNOWN_TUNNEL', message: `no tunnel is named "${label}" on this relay` };
      return found.state === 'online'
        ? { error: 'BURROW_ERR_NODE_UNREACHABLE', message: `the relay node holding tunnel "${label}" is gone and its agent has not reconnected yet` }
        : {
            error: 'BURROW_ERR_TUNNEL_OFFLINE',
            message: `tunnel "${label}" did not come back within ${ctx.config.reconnectGraceMs} ms; start its agent again`,
          };
    }
    waited = true;
    await new Promise((r) => setTimeout(r, Math.min(RECONNECT_POLL_MS, until - now)));
  }
}
