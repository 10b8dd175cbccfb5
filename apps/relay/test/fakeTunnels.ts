/** Test helper: a LiveTunnels over a fixed list, standing in for the relay's fleet-wide source. */
import type { LiveTunnel, LiveTunnels } from '../src/tenancy/types';

/** A LiveTunnels over a fixed list; disconnect removes the session holding the label. */
export class FakeTunnels implements LiveTunnels {
  constructor(public tunnels: LiveTunnel[] = []) {}
  async list(): Promise<LiveTunnel[]> {
    return [...this.tunnels];
  }
  async disconnect(label: string): Promise<boolean> {
    const i = this.tunnels.findIndex((t) => t.label === label || t.names.includes(label));
    if (i < 0) return false;
    this.tunnels.splice(i, 1);
    return true;
  }
}

export const tunnel = (label: string, tenant?: string): LiveTunnel => ({
  kind: 'http',
  label,
  names: [],
  ...(tenant !== undefined ? { tenant } : {}),
  node: 'n1',
  sessionId: `s-${label}`,
  connectedAt: 1,
  peer: '127.0.0.1',
  requests: 0,
  bytesIn: 0,
  bytesOut: 0,
});
