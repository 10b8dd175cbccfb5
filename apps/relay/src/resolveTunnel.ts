/**
 * Label → holder: this node's session table first (no await on the hot path), then the bus
 * registry. Unknown labels are 404, known ones without an agent 502.
 */
import type { Holder } from '@burrow/bus';
import type { ErrorCode } from '@burrow/protocol';
import type { RelayContext } from './relayContext';

export type Resolution = { readonly holder: Holder } | { readonly error: ErrorCode; readonly message: string };

export function resolveLocal(ctx: RelayContext, label: string): Holder | undefined {
  const s = ctx.sessions.byLabel.get(label);
  return s?.isActive ? s.holder() : undefined;
}

export async function resolveRemote(ctx: RelayContext, label: string): Promise<Resolution> {
  const found = await ctx.bus.registry.lookup(label);
  switch (found.state) {
    case 'online':
      return { holder: found.holder };
    case 'offline':
      return { error: 'BURROW_ERR_TUNNEL_OFFLINE', message: `tunnel "${label}" is known but its agent is not connected; start the agent again` };
    case 'unknown':
      return { error: 'BURROW_ERR_UNKNOWN_TUNNEL', message: `no tunnel is named "${label}" on this relay` };
  }
}
