/**
 * What a tunnel's policy (carried with its holder) demands before a public request may reach
 * the agent: the visitor's address and credentials (the agent's access rules), and the tenant's
 * request rate. Checked at the ingress node, so refused requests never cross the bus.
 */
import type { IncomingMessage } from 'node:http';
import type { Holder } from '@burrow/bus';
import type { RelayContext } from './relayContext';
import { checkVisitor } from './visitorAccess';

export interface Refusal {
  readonly code: 'BURROW_ERR_VISITOR_FORBIDDEN' | 'BURROW_ERR_VISITOR_UNAUTHORIZED' | 'BURROW_ERR_RATE_LIMITED';
  readonly message: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** undefined: admitted (credential headers the tunnel consumed are removed from `req`). */
export function admitVisitor(ctx: RelayContext, holder: Holder, req: IncomingMessage): Refusal | undefined {
  const policy = holder.policy;
  if (policy === undefined) return undefined;
  if (policy.access !== undefined) {
    const d = checkVisitor(policy.access, { address: ctx.accessLog.visitor(req), headers: req.headers });
    if (!d.ok) return d;
    // The tunnel's secret is for the relay: the local app never sees it.
    for (const name of d.strip) stripHeader(req, name);
  }
  if (policy.tenant !== undefined && policy.requestsPerMinute !== undefined) {
    const r = ctx.tenancy.rate.take(policy.tenant, policy.requestsPerMinute);
    if (!r.ok) {
      return {
        code: 'BURROW_ERR_RATE_LIMITED',
        message: `this tunnel's tenant is over its ${policy.requestsPerMinute} requests per minute; retry in ${r.retryAfterS} s`,
        headers: { 'retry-after': String(r.retryAfterS) },
      };
    }
  }
  return undefined;
}

/** Removes every instance of a header (lowercase name) from a parsed request. */
function stripHeader(req: IncomingMessage, name: string): void {
  delete req.headers[name];
  const raw = req.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    if ((raw[i] as string).toLowerCase() === name) raw.splice(i, 2);
  }
}
